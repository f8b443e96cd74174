"""Test helpers: in-memory SQS and Lambda fakes with real semantics, fault injection, and
local servers (moto, fauxqs, a Lambda Invoke endpoint, a fault-injecting HTTP proxy), and
`npm_install`, which installs npm packages once into a cache shared by parallel processes.
The fakes need nothing beyond asyncloop; the servers need their extras (MotoServer moto's
server, LambdaServer the ``testing`` extra's httptools, FauxqsServer Node.js).

Use them to test your own handlers without AWS::

    from asyncloop import CallableDispatcher, Consumer, ConsumerConfig
    from asyncloop.testing import FakeQueue

    queue = FakeQueue()
    queue.send_many(["a", "b"])
    stats = await Consumer(queue=queue, dispatcher=CallableDispatcher(my_handler),
                           config=ConsumerConfig(until_empty=True, wait_time_seconds=0)).run()
"""

from ._fake_lambda import FakeLambda as FakeLambda
from ._fake_queue import FakeQueue as FakeQueue
from ._fault_plan import FaultPlan as FaultPlan
from ._fault_plan import Latency as Latency
from ._fault_proxy import FaultProxy as FaultProxy
from ._fault_proxy import Faults as Faults
from ._fauxqs import FAUXQS_VERSION as FAUXQS_VERSION
from ._fauxqs import FauxqsError as FauxqsError
from ._fauxqs import FauxqsServer as FauxqsServer
from ._fauxqs import ensure_fauxqs as ensure_fauxqs
from ._fauxqs import node_available as node_available
from ._lambda_server import Invocation as Invocation
from ._lambda_server import LambdaServer as LambdaServer
from ._moto import MotoServer as MotoServer
from ._npm import npm_install as npm_install

__all__ = (
    "FAUXQS_VERSION",
    "FakeLambda",
    "FakeQueue",
    "FaultPlan",
    "FaultProxy",
    "Faults",
    "FauxqsError",
    "FauxqsServer",
    "Invocation",
    "LambdaServer",
    "Latency",
    "MotoServer",
    "ensure_fauxqs",
    "node_available",
    "npm_install",
)
