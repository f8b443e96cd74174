"""The lean AWS transport: SQS's hot calls and Lambda Invoke over HTTP/1.1, SigV4-signed.

Behind the `Queue` and `LambdaInvoker` protocols, for the hot path only (control-plane calls
stay on aioboto3). One module per job: `signing` (SigV4), `http` (the settings taken from the
client), `pool` (keep-alive HTTP/1.1 connections), `answer` (reading their answers), `retry`
(botocore's standard mode), `service` (one service: prepare, sign, send, retry, map errors),
`sqs` (`LeanQueue`), `lambda_` (`LeanInvoker`), `transport` (`LeanTransport`, built from the
run's aiobotocore clients). Importing it imports botocore: only the wiring does.
"""

from .lambda_ import LeanInvoker as LeanInvoker
from .sqs import LeanQueue as LeanQueue
from .transport import LeanTransport as LeanTransport

__all__ = ("LeanInvoker", "LeanQueue", "LeanTransport")
