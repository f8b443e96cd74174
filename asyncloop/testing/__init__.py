"""Test helpers: in-memory SQS and Lambda fakes with real semantics, and fault injection.

Use them to test your own handlers without AWS::

    from asyncloop import CallableDispatcher, Consumer, ConsumerConfig
    from asyncloop.testing import FakeQueue

    queue = FakeQueue()
    queue.send_many(["a", "b"])
    stats = await Consumer(queue=queue, dispatcher=CallableDispatcher(my_handler),
                           config=ConsumerConfig(until_empty=True, wait_time_seconds=0)).run()
"""

from ._fakes import FakeLambda as FakeLambda
from ._fakes import FakeQueue as FakeQueue
from ._fakes import FaultPlan as FaultPlan
from ._fakes import Latency as Latency

__all__ = ("FakeLambda", "FakeQueue", "FaultPlan", "Latency")
