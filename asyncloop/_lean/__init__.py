"""The lean AWS transport: SQS's hot calls and Lambda Invoke over aiohttp, SigV4-signed.

Behind the `Queue` and `LambdaInvoker` protocols, for the hot path only (control-plane calls
stay on aioboto3). One module per job: `signing` (SigV4), `http` (the aiohttp session),
`retry` (botocore's standard mode), `service` (one service: sign, send, retry, map errors),
`sqs` (`LeanQueue`), `lambda_` (`LeanInvoker`), `transport` (`LeanTransport`, built from the
run's aiobotocore clients). Importing it imports aiohttp and botocore: only the wiring does.
"""

from .lambda_ import LeanInvoker as LeanInvoker
from .sqs import LeanQueue as LeanQueue
from .transport import LeanTransport as LeanTransport

__all__ = ("LeanInvoker", "LeanQueue", "LeanTransport")
