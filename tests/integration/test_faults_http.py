"""2,000 messages through the HTTP fault proxy at 10% mixed faults: nothing lost.

fauxqs (SQS) and the local Lambda endpoint each sit behind a `FaultProxy` (500, 503, throttles,
connection resets, answers slower than the client's read timeout; a third of the faults after
the request reached the server). One message in a hundred is a deliberate poison. The scenario
lives in `bench.reliability`, whose 10,000-message run reports the same figures. It runs on
both transports (the conftest's `transport` fixture), held to the same contract and bound.
"""

from __future__ import annotations

import pytest

from asyncloop._config import Transport
from asyncloop.testing import node_available
from bench.reliability import FaultReport, run_fault_scenario

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.integration,
    pytest.mark.skipif(not node_available(), reason="fauxqs needs Node.js >= 20 and npm"),
]


@pytest.mark.timeout(240)
async def test_2000_messages_at_10_percent_faults_lose_nothing(transport: Transport) -> None:
    # GIVEN 2,000 messages (20 of them poison) and 10% faults on every SQS and Lambda request
    # WHEN the consumer runs on `transport` until the queue is empty and the DLQ holds the poison
    report = await run_fault_scenario(
        messages=2000, fault_rate=0.10, seed=7, max_seconds=180, transport=transport
    )
    # THEN it ran on that transport
    assert report.transport == transport
    _holds_the_contract(report)


@pytest.mark.timeout(240)
async def test_a_prefetching_consumer_loses_nothing_under_the_same_faults() -> None:
    # GIVEN the same run with 10 messages prefetched beyond the 64 in flight (default transport)
    report = await run_fault_scenario(
        messages=2000, fault_rate=0.10, seed=11, max_seconds=180, prefetch=10
    )
    # THEN it held the prefetch, and the same contract and bound hold
    assert report.prefetch == 10
    assert report.consumer["peak_in_flight"] > 64
    _holds_the_contract(report)


def _holds_the_contract(report: FaultReport) -> None:
    # Faults really happened on both sides,
    assert sum(report.faults_sqs.values()) > 0
    assert sum(report.faults_lambda.values()) > 0
    # every good message ran and was deleted, only the poison is in the DLQ, none is lost,
    assert report.left_in_queue == 0
    assert report.lost == 0
    assert report.misplaced == 0
    assert report.in_dlq == report.poison == 20
    assert report.succeeded_unique == 2000 - 20
    assert report.consumer["deleted"] >= report.succeeded_unique
    # and the duplicates are counted and no more than the faults that can cause them
    assert report.duplicates == report.successful_runs - report.succeeded_unique
    assert report.duplicates <= report.duplicate_bound
    assert report.ok
