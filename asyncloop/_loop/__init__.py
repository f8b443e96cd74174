"""The Kinesis loop (private): the seed's self-re-triggering Lambda loop, made safe.

- `control`: the loop's decisions, free of I/O (tokens, claims, how many tokens to put,
  backoff, the safety margin, when the watchdog re-seeds).
- `lease`: the lease store's Protocol, the invariant it keeps, and the in-memory store.
- `lease_dynamodb`: the DynamoDB lease store, those decisions as conditional writes.
- `runner`: one run of a token and one watchdog pass, over the `LoopRuntime` seams.
- `settings`: the settings read from the Lambda environment, and the runtime wired on AWS.
- `app`: the Lambda handlers' state across warm invocations (`asyncloop.lambda_handler`
  is the public facade over it).
- `simulate`: a year of runs on a virtual clock, checking the invariants.
"""
