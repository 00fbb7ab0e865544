"""The local queue's SQL order (``db.workitems.QUEUE_ORDER``, what ``spine worker`` claims next and
``spine work list`` prints) is the order ``core.lifecycle.queue_order`` gives the operator, ties
included; and ``runnable`` finds due what ``core.lifecycle.is_due`` calls due."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, update

from market_spine.core import lifecycle
from market_spine.core.partitions import Tier
from market_spine.core.states import WorkState
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db import workitems as repo
from market_spine.db.schema import core_work_items
from market_spine.services.queue import LocalQueue

INGEST = "finra.otc_transparency.ingest_week"
T0 = datetime(2025, 12, 1, 12, tzinfo=UTC)


def test_sql_and_lifecycle_order_the_queue_alike(engine: Engine) -> None:
    queue = LocalQueue(engine, lambda: T0)
    weeks = [date(2025, 9, 1) + timedelta(weeks=n) for n in reversed(range(8))]  # ids against name order
    # Priorities and desired times with ties, so every key of the order decides somewhere.
    shapes = [(100, 0), (100, 0), (500, 5), (100, -5), (500, 5), (100, 0), (0, 0), (500, 0)]
    for week, (priority, minutes) in zip(weeks, shapes, strict=True):
        spec = WorkItemSpec(
            pipeline=INGEST,
            partition=FinraPartition(week=week, tier=Tier.OTC),
            params={"source": "finra-api"},
            priority=priority,
            desired_at=T0 + timedelta(minutes=minutes),
        )
        queue.enqueue(spec)
    with engine.begin() as conn:  # one creation time for all but two: the name breaks the ties
        conn.execute(update(core_work_items).values(created_at=T0))
        conn.execute(
            update(core_work_items).where(core_work_items.c.id.in_([2, 5])).values(created_at=T0 - timedelta(seconds=1))
        )
        rows = repo.list_items(conn, limit=100)

    def key(r: repo.WorkItemRecord) -> tuple[int, str, str, str]:
        return lifecycle.queue_order(r.priority, r.desired_at.isoformat(), r.created_at.isoformat(), r.k8s_name or "")

    assert [r.id for r in rows] == [r.id for r in sorted(rows, key=key)]
    assert len({key(r)[:3] for r in rows}) < len(rows)  # there were ties for the name to break


def test_runnable_finds_due_what_the_lifecycle_calls_due(engine: Engine) -> None:
    queue = LocalQueue(engine, lambda: T0)
    partition = FinraPartition(week=date(2025, 11, 10), tier=Tier.OTC)
    queue.enqueue(WorkItemSpec(pipeline=INGEST, partition=partition, params={"source": "finra-api"}))
    with engine.begin() as conn:  # a RETRY_WAIT row with no next attempt time (written by hand)
        conn.execute(update(core_work_items).values(state=WorkState.RETRY_WAIT.value, next_attempt_at=None))
    with engine.begin() as conn:
        (record,) = repo.list_items(conn)
        assert lifecycle.is_due(record.item(), T0)
        found = repo.runnable(conn, T0)
    assert found is not None and found.id == record.id
