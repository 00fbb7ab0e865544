"""Every work-item write is compare-and-set on the version it was planned from (procrastinate's
rule): a write planned from a state that moved underneath it fails loudly and changes nothing, and
a command that lost such a race reads the item again and decides again instead of writing blind.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from market_spine.core import lifecycle
from market_spine.core.partitions import Tier
from market_spine.core.states import WorkState
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db import workitems as repo
from market_spine.errors import ChangedMeanwhile
from market_spine.services import queue as local
from market_spine.services.decisions import carry_out

INGEST = "finra.otc_transparency.ingest_week"
NOW = datetime(2025, 12, 1, 12, tzinfo=UTC)
PARTITION = FinraPartition(week="2025-11-10", tier=Tier.OTC)


def _queue(engine: Engine) -> local.LocalQueue:
    queue = local.LocalQueue(engine, lambda: NOW)
    queue.enqueue(WorkItemSpec(pipeline=INGEST, partition=PARTITION, params={"source": "finra-api"}))
    return queue


def test_a_write_planned_from_an_older_version_is_refused_and_changes_nothing(engine: Engine) -> None:
    queue = _queue(engine)
    stale = queue.get(INGEST, PARTITION)
    queue.cancel(INGEST, PARTITION)  # someone else's write: the version moves on
    claim = lifecycle.claim(stale.item(), now=NOW, execution="x-a1")  # planned from PENDING

    with engine.begin() as conn, pytest.raises(ChangedMeanwhile, match=r"was PENDING when read; read it again"):
        carry_out(conn, stale, claim, now=NOW)

    after = queue.get(INGEST, PARTITION)
    assert (after.state, after.attempt_count, after.version) == (WorkState.CANCELLED, 0, stale.version + 1)


def test_a_command_that_loses_the_race_decides_again_from_what_it_reads(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _queue(engine)
    seen: list[WorkState] = []
    real_cancel = lifecycle.cancel

    def cancel_while_a_worker_claims(item: lifecycle.Item, *, now: datetime, message: str = "") -> lifecycle.Decision:
        seen.append(item.state)
        decision = real_cancel(item, now=now)
        if len(seen) == 1:  # between this command's decision and its write, a worker claims the item
            with engine.begin() as conn:
                record = repo.get_by_id(conn, queue.get(INGEST, PARTITION).id, for_update=True)
                assert record is not None
                carry_out(conn, record, lifecycle.claim(record.item(), now=now, execution="w-a1"), now=now)
        return decision

    monkeypatch.setattr(local.lifecycle, "cancel", cancel_while_a_worker_claims)
    cancelled = queue.cancel(INGEST, PARTITION)

    # The decision planned from PENDING was refused; read again, the item was RUNNING, and the
    # cancel was decided again as "cancel while running": the claimed attempt no longer counts.
    assert seen == [WorkState.PENDING, WorkState.RUNNING]
    assert cancelled.state is WorkState.CANCELLED
    assert cancelled.current_execution_id is None
    with engine.begin() as conn:
        assert repo.lock_attempt(conn, cancelled.id, "w-a1") is None  # the worker's result is not kept
