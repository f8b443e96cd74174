"""asyncloop: an asyncio SQS consumer that dispatches to Lambda or in-process handlers.

The AWS-backed names (`AwsClients`, `SqsQueue`, `AioLambdaInvoker`, `open_consumer`) are
imported on first use: botocore costs about 100 ms to import, and this package ships into
Lambda, where import time is cold-start time.
"""

from typing import TYPE_CHECKING, Any

from ._config import AwsConfig as AwsConfig
from ._config import ConsumerConfig as ConsumerConfig
from ._config import LambdaConfig as LambdaConfig
from ._consumer import Consumer as Consumer
from ._dispatch import CallableDispatcher as CallableDispatcher
from ._dispatch import LambdaDispatcher as LambdaDispatcher
from ._exceptions import AsyncloopError as AsyncloopError
from ._exceptions import AwsError as AwsError
from ._exceptions import ClosedError as ClosedError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import CredentialsError as CredentialsError
from ._exceptions import DispatchError as DispatchError
from ._exceptions import DispatchThrottled as DispatchThrottled
from ._exceptions import FunctionError as FunctionError
from ._exceptions import FunctionNotFound as FunctionNotFound
from ._exceptions import HandlerFailed as HandlerFailed
from ._exceptions import PayloadTooLarge as PayloadTooLarge
from ._exceptions import QueueError as QueueError
from ._exceptions import QueueNotFound as QueueNotFound
from ._exceptions import TransportError as TransportError
from ._histogram import LatencyHistogram as LatencyHistogram
from ._payload import build_payload as build_payload
from ._protocols import Dispatcher as Dispatcher
from ._protocols import LambdaInvoker as LambdaInvoker
from ._protocols import Queue as Queue
from ._stats import Stats as Stats
from ._types import BatchEntryFailure as BatchEntryFailure
from ._types import InvokeResult as InvokeResult
from ._types import Message as Message

if TYPE_CHECKING:
    from ._aws import AioLambdaInvoker as AioLambdaInvoker
    from ._aws import AwsClients as AwsClients
    from ._aws import SqsQueue as SqsQueue
    from ._wiring import open_consumer as open_consumer

__version__ = "0.1.0"

__all__ = (
    "AioLambdaInvoker",
    "AsyncloopError",
    "AwsClients",
    "AwsConfig",
    "AwsError",
    "BatchEntryFailure",
    "CallableDispatcher",
    "ClosedError",
    "ConfigError",
    "Consumer",
    "ConsumerConfig",
    "CredentialsError",
    "DispatchError",
    "DispatchThrottled",
    "Dispatcher",
    "FunctionError",
    "FunctionNotFound",
    "HandlerFailed",
    "InvokeResult",
    "LambdaConfig",
    "LambdaDispatcher",
    "LambdaInvoker",
    "LatencyHistogram",
    "Message",
    "PayloadTooLarge",
    "Queue",
    "QueueError",
    "QueueNotFound",
    "SqsQueue",
    "Stats",
    "TransportError",
    "build_payload",
    "open_consumer",
)

# name -> the private module that defines it, imported on first use
_LAZY = {
    "AioLambdaInvoker": "_aws",
    "AwsClients": "_aws",
    "SqsQueue": "_aws",
    "open_consumer": "_wiring",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'asyncloop' has no attribute {name!r}")
