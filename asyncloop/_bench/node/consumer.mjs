// The node-sqs-consumer baseline: bbc/sqs-consumer as its README sets it up, scaled the way its
// README scales (more Consumer instances of batchSize 10), invoking Lambda (the bench's
// InvocationType, Event by default) once per message through @aws-sdk/client-lambda. Run by
// asyncloop/_bench/_node_baseline.py:
//
//   node consumer.mjs '<json config>'
//
// config: {sqsEndpoint, lambdaEndpoint, queueUrl, functionName, region, instances, batchSize,
//          expected, waitTimeSeconds, deleteMessages, invocationType}. Every address is the caller's (127.0.0.1
//          in the bench).
//
// stdout, one JSON object a line:
//   {"event": "ready"}                         clients and consumers built; waiting for "start"
//   {"event": "progress", received, invoked, deleted, errors}   cumulative, at most every 10 ms
//   {"event": "done", ...counts, elapsed_s, msgs_s, cpu_s, calls, latencies_ms,
//    send_latencies_ms}                       receive to invoked, SentTimestamp to invoked; exit 0
// stdin: the line "start" starts every consumer; stdin closing (the parent gave up) exits at once.
//
// A message counts as "invoked" when its Invoke was accepted (the point at which asyncloop's
// bench counts a success) and "deleted" when sqs-consumer deleted it (message_processed). The
// run stops by itself once `expected` messages were invoked and deleted.

import { Agent } from "node:http";
import { createInterface } from "node:readline";
import { LambdaClient, InvokeCommand } from "@aws-sdk/client-lambda";
import { SQSClient } from "@aws-sdk/client-sqs";
import { Consumer } from "sqs-consumer";

const config = JSON.parse(process.argv[2]);
const { instances, batchSize, expected } = config;
const concurrency = instances * batchSize;
// The bench runs against local emulators that accept any credentials: never read ~/.aws.
const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };
// The SDK's default pool is 50 sockets; like asyncloop's, it is sized to what can be in flight
// (every instance's poll plus one SQS or Lambda call per message), so no call waits for a socket.
const agent = () => new Agent({ keepAlive: true, maxSockets: concurrency + instances });

const calls = {};
function counted(client) {
  // Count every API call by operation, as the bench's wrappers do for the Python contenders.
  const send = client.send.bind(client);
  client.send = (command, ...rest) => {
    const name = command.constructor.name.replace(/Command$/, "");
    calls[name] = (calls[name] ?? 0) + 1;
    return send(command, ...rest);
  };
  return client;
}

const sqs = counted(
  new SQSClient({
    endpoint: config.sqsEndpoint,
    region: config.region,
    credentials,
    // fauxqs's queue URLs name sqs.<region>.localhost: talk to the endpoint, not the URL's host.
    useQueueUrlAsEndpoint: false,
    requestHandler: { httpAgent: agent() },
  }),
);
const lambda = counted(
  new LambdaClient({
    endpoint: config.lambdaEndpoint,
    region: config.region,
    credentials,
    requestHandler: { httpAgent: agent() },
  }),
);

let received = 0;
let invoked = 0;
let deleted = 0;
let errors = 0;
let startedAt = 0n;
let finishedAt = 0n;
let cpuStart = null;
const latencies = [];
const sendLatencies = [];
const receivedAt = new Map();

function write(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

function progress() {
  write({ event: "progress", received, invoked, deleted, errors });
}

async function handleMessage(message) {
  // The seed's payload (asyncloop's "seed" shape), one Event invoke per message.
  const payload = JSON.stringify({
    Records: [
      {
        sqs: {
          QueueUrl: config.queueUrl,
          MessageId: message.MessageId,
          ReceiptHandle: message.ReceiptHandle,
          MD5OfBody: message.MD5OfBody,
          Body: message.Body,
        },
      },
    ],
  });
  const response = await lambda.send(
    new InvokeCommand({
      FunctionName: config.functionName,
      InvocationType: config.invocationType,
      Payload: Buffer.from(payload),
    }),
  );
  // RequestResponse: a function error is a failed message (sqs-consumer then keeps it).
  if (response.FunctionError) throw new Error(`function error: ${response.FunctionError}`);
  invoked += 1;
  const at = receivedAt.get(message.MessageId);
  if (at !== undefined) {
    latencies.push(Number(process.hrtime.bigint() - at) / 1e6);
  }
  const sent = Number(message.Attributes?.SentTimestamp);
  if (sent > 0) sendLatencies.push(Math.max(0, Date.now() - sent));
  if (invoked === expected) {
    finishedAt = process.hrtime.bigint();
    progress();
  }
  // sqs-consumer 14 deletes the messages the handler returns (undefined would keep it).
  return message;
}

const consumers = [];
for (let i = 0; i < instances; i += 1) {
  const consumer = Consumer.create({
    queueUrl: config.queueUrl,
    batchSize,
    // For the send-to-done latency, as the bench's other contenders record it.
    messageSystemAttributeNames: ["SentTimestamp"],
    waitTimeSeconds: config.waitTimeSeconds,
    // --delete-by worker: the worker deletes, as in the seed; sqs-consumer must not.
    shouldDeleteMessages: config.deleteMessages,
    sqs,
    handleMessage,
  });
  consumer.on("message_received", (message) => {
    received += 1;
    receivedAt.set(message.MessageId, process.hrtime.bigint());
  });
  consumer.on("message_processed", (message) => {
    deleted += 1;
    receivedAt.delete(message.MessageId);
    if (deleted >= expected && invoked >= expected) finish();
  });
  for (const name of ["error", "processing_error", "timeout_error"]) {
    consumer.on(name, () => {
      errors += 1;
    });
  }
  consumers.push(consumer);
}

let ticker = null;
let finished = false;

function finish() {
  if (finished) return;
  finished = true;
  clearInterval(ticker);
  // abort: the queue is empty, the other instances' long polls need not be waited for.
  for (const consumer of consumers) consumer.stop({ abort: true });
  const cpu = process.cpuUsage(cpuStart);
  const elapsed = Number((finishedAt || process.hrtime.bigint()) - startedAt) / 1e9;
  write({
    event: "done",
    received,
    invoked,
    deleted,
    errors,
    instances,
    batch_size: batchSize,
    elapsed_s: elapsed,
    msgs_s: elapsed > 0 ? invoked / elapsed : 0,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    calls,
    latencies_ms: latencies.map((value) => Math.round(value * 1000) / 1000),
    send_latencies_ms: sendLatencies,
  });
  // Exit once stdout is flushed: aborted polls and idle keep-alive sockets must not hold us.
  process.stdout.write("", () => process.exit(0));
}

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim() !== "start" || startedAt !== 0n) return;
  cpuStart = process.cpuUsage();
  startedAt = process.hrtime.bigint();
  let last = "";
  ticker = setInterval(() => {
    const now = `${received} ${invoked} ${deleted} ${errors}`;
    if (now !== last) {
      last = now;
      progress();
    }
  }, 10);
  for (const consumer of consumers) consumer.start();
});
// The parent closed our stdin: it is gone or gave up on this run.
input.on("close", () => {
  if (!finished) process.exit(3);
});

write({ event: "ready" });
