"""The operator's work queue and admission control, on their own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from market_spine.operator.queueing import Admission, WorkQueue

T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)


def order(priority: int, name: str) -> tuple[int, str, str, str]:
    return (-priority, "2025-12-16T10:30:00Z", "2025-12-16T10:00:00Z", name)


def test_admission_limits_globally_and_per_pipeline_by_priority() -> None:
    woken: list[str] = []
    admission: Admission[str] = Admission(max_running=2, max_per_pipeline=1, on_grant=woken.append)
    assert admission.request("a-low", "ingest", order(10, "a-low"))
    assert not admission.request("a-high", "ingest", order(500, "a-high"))  # ingest is full
    assert admission.request("n", "normalize", order(1, "n"))  # another pipeline's slot
    assert not admission.request("c", "compute", order(900, "c"))  # global limit
    admission.observe("a-low", "ingest", running=True)
    admission.observe("n", "normalize", running=True)
    assert admission.waiting() == 2
    admission.observe("n", "normalize", running=False)  # a slot frees: compute has the higher priority
    assert woken == ["c"]
    admission.observe("a-low", "ingest", running=False)
    assert woken == ["c", "a-high"]
    assert admission.waiting() == 0


def test_a_granted_slot_that_is_not_used_goes_back() -> None:
    woken: list[str] = []
    admission: Admission[str] = Admission(max_running=1, max_per_pipeline=1, on_grant=woken.append)
    assert admission.request("a", "p", order(1, "a"))
    assert not admission.request("b", "p", order(1, "b"))
    admission.release("a")  # e.g. its status write lost a race
    assert woken == ["b"]
    admission.forget("b")  # deleted
    assert admission.request("c", "p", order(1, "c"))


def test_repeated_requests_do_not_grow_the_waiting_heap() -> None:
    admission: Admission[str] = Admission(max_running=1, max_per_pipeline=1, on_grant=lambda _k: None)
    admission.request("a", "p", order(1, "a"))
    for _ in range(1000):
        admission.request("b", "p", order(1, "b"))
    assert len(admission._waiting) == 1


async def test_work_queue_dedups_requeues_dirty_keys_and_wakes_on_the_clock() -> None:
    now = [T0]
    queue: WorkQueue[str] = WorkQueue(lambda: now[0], tick=0.01, rank=lambda k: (k,))
    timer = asyncio.create_task(queue.run_timer())
    try:
        queue.add("b")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        assert await queue.get() == ("a", False)  # by rank
        queue.add("a")  # changed while being processed: comes back once done
        assert len(queue) == 1
        queue.done("a")
        assert sorted([(await queue.get())[0], (await queue.get())[0]]) == ["a", "b"]
        queue.done("a")
        queue.done("b")

        queue.add_at("c", T0 + timedelta(seconds=60))
        queue.add_at("c", T0 + timedelta(seconds=90))  # a later wake-up does not replace an earlier one
        await asyncio.sleep(0.05)
        assert len(queue) == 0
        now[0] = T0 + timedelta(seconds=60)
        assert await asyncio.wait_for(queue.get(), 1) == ("c", True)  # a wake-up is forced
        queue.done("c")
        assert queue.retry("c") == 0.2 and queue.retry("c") == 0.4
        queue.forget("c")
    finally:
        timer.cancel()
