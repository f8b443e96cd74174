"""`LeanTransport`: the lean SQS queue and Lambda invoker, built from the run's SDK clients.

Why: the wiring needs one object with a lifetime (an async context manager) that owns the
HTTP pools and hands out `LeanQueue`s and a `LeanInvoker`; everything it needs to know
(credentials, region, endpoints, timeouts, CA bundle, pool size, attempt cap) comes from the
aiobotocore clients the run creates anyway for its control-plane calls::

    async with AwsClients(config, pool_size=n) as aws:
        async with LeanTransport.from_clients(aws) as lean:
            queue = lean.queue(queue_url)
            invoker = lean.invoker()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._lifetime import OpenOnce
from .lambda_ import LeanInvoker
from .service import ServiceChannel
from .sqs import LeanQueue

if TYPE_CHECKING:
    from .._aws import AwsClients

__all__ = ("LeanTransport",)


class LeanTransport(OpenOnce):
    """Owns one HTTP pool per service; the SDK clients stay the caller's (open them first).

    Entered once; `queue` and `invoker` are valid while it is open. Closing it closes the
    pools, not the clients.
    """

    def __init__(self, *, sqs_client: Any, lambda_client: Any | None = None) -> None:
        self._sqs = ServiceChannel(sqs_client)
        self._lambda = ServiceChannel(lambda_client) if lambda_client is not None else None

    @classmethod
    def from_clients(cls, aws: AwsClients) -> LeanTransport:
        """A transport over `aws`'s SQS and Lambda clients (`aws` must be open)."""
        return cls(sqs_client=aws.sqs, lambda_client=aws.lambda_)

    async def _open(self) -> None:
        # The endpoint botocore resolves for these calls (QueueUrl / FunctionName play no
        # part in SQS's and Lambda's endpoint rules)
        await self._sqs.open("ReceiveMessage", {"QueueUrl": "https://example/0/q"})
        if self._lambda is not None:
            await self._lambda.open("Invoke", {"FunctionName": "f"})

    async def _close(self) -> None:
        await self._sqs.aclose()
        if self._lambda is not None:
            await self._lambda.aclose()

    def queue(self, queue_url: str) -> LeanQueue:
        """The `Queue` protocol for `queue_url`."""
        self._check_open()
        return LeanQueue(self._sqs, queue_url)

    def invoker(self) -> LeanInvoker:
        """The `LambdaInvoker` protocol (needs the Lambda client)."""
        self._check_open()
        if self._lambda is None:
            raise RuntimeError("this LeanTransport was built without a Lambda client")
        return LeanInvoker(self._lambda)
