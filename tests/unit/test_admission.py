"""Admission control: bounded in-flight + bounded queue, fail fast beyond, cancellation leaves the queue."""

from __future__ import annotations

import asyncio

import pytest

from lpnode.errors import UnavailableError
from lpnode.runner.admission import Admission


def test_overflow_is_refused_at_once_and_queued_jobs_run_in_order() -> None:
    async def scenario() -> list[str]:
        admission = Admission(max_in_flight=1, max_queue=2)
        order: list[str] = []
        release = asyncio.Event()

        async def job(name: str) -> None:
            async with admission.slot():
                order.append(name)
                await release.wait()

        tasks = [asyncio.create_task(job(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0)
        assert (admission.in_flight, admission.queued) == (1, 2)
        with pytest.raises(UnavailableError) as refused:
            async with admission.slot():
                pass
        assert refused.value.status_code == 503 and refused.value.retry_after >= 1
        release.set()
        await asyncio.gather(*tasks)
        assert (admission.in_flight, admission.queued) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async def scenario() -> None:
        admission = Admission(max_in_flight=1, max_queue=1)
        hold = asyncio.Event()

        async def holder() -> None:
            async with admission.slot():
                await hold.wait()

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(holder())
        await asyncio.sleep(0)
        assert admission.queued == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert admission.queued == 0
        # The freed queue place can be taken again.
        again = asyncio.create_task(holder())
        await asyncio.sleep(0)
        assert admission.queued == 1
        hold.set()
        await asyncio.gather(first, again)

    asyncio.run(scenario())


def test_retry_after_grows_with_the_backlog() -> None:
    admission = Admission(max_in_flight=1, max_queue=10)
    for _ in range(20):
        admission.record_duration(4.0)
    assert admission.retry_after() == 1  # nothing waiting: the minimum
    admission.in_flight, admission.queued = 1, 3
    assert admission.retry_after() >= 12
