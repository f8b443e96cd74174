"""Packaging and deployment (private): what `asyncloop package` and `asyncloop deploy` run.

- `package`: builds the Lambda zip (asyncloop and its runtime dependencies for Lambda's
  platform; this subpackage, the test fakes and the benchmark stay out of it).
- `spec`: what to deploy (`DeploySpec`), the shipped template and its parameters.
- `deploy`: uploads the zip and creates or updates the CloudFormation stack.
- `templates/asyncloop.yaml`: the stack (queue, DLQ, token stream, lease table, functions).
"""
