"""Carry out ``core.lifecycle`` decisions on the local backend's tables, inside the caller's transaction.

Called by the local queue (``services.queue``: retry, cancel, wake, dismiss) and the local worker
(``services.worker``: claim, the fence that ends an attempt, failures, lost and released
attempts). :func:`carry_out` writes the decided item compare-and-set on the version it was read at,
records the attempt it starts or ends in ``core_executions``, and runs the chain decision for the
next stage in the same transaction, so an upstream success and the re-run of its downstream are
committed together or not at all. The operator carries out the same decisions on SpineWorkItems
(``operator.reconciler``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from market_spine.core import lifecycle
from market_spine.core.states import WorkState
from market_spine.db import workitems as repo

BACKEND = "local"
# Columns of a running attempt that no other state keeps.
_NOT_RUNNING = {"lease_expires_at": None, "deadline_at": None, "locked_by": None}


@dataclass
class Carried:
    record: repo.WorkItemRecord  # the row as written
    notes: list[lifecycle.Note] = field(default_factory=list)  # the decision's and the chain's


def carry_out(
    conn: Connection,
    record: repo.WorkItemRecord,
    decision: lifecycle.Decision,
    *,
    now: datetime,
    row_count: int | None = None,
    **extra: Any,
) -> Carried:
    """Write ``decision`` over ``record`` (``ChangedMeanwhile`` if the row moved since it was read)
    and carry out its effects. ``row_count``: what an ending attempt wrote, recorded with its end;
    ``extra``: the lease columns of a claim."""
    columns = (_NOT_RUNNING if decision.item.state is not WorkState.RUNNING else {}) | extra
    saved = repo.save(conn, record, decision.item, **columns)
    carried = Carried(saved, list(decision.notes))
    for start in decision.of(lifecycle.StartAttempt):
        repo.upsert_execution(conn, _execution(saved, start.execution_id, attempt=start.attempt, started_at=now))
    for end in decision.of(lifecycle.EndAttempt):
        repo.upsert_execution(
            conn,
            _execution(
                saved,
                end.execution_id,
                finished_at=now,
                outcome=end.outcome.value,
                error=end.message,
                capture_id=end.capture_id,
                row_count=row_count,
            ),
        )
    for step in decision.of(lifecycle.ChainNext):
        carried.notes += chain(conn, saved, step, now=now)
    return carried


def chain(
    conn: Connection, upstream: repo.WorkItemRecord, step: lifecycle.ChainNext, *, now: datetime
) -> list[lifecycle.Note]:
    """``core.lifecycle.chain`` for the next stage's row: create it, re-open it, point it at this
    run, or leave it (a replayed completion)."""
    spec = upstream.spec().downstream(step).model_copy(update={"desired_at": now})
    existing = repo.get_by_key(conn, spec.domain, spec.pipeline, spec.partition_key, for_update=True)
    decision = lifecycle.chain(step, existing.item() if existing else None, now=now)
    if decision.action is lifecycle.ChainAction.CREATE:
        repo.insert_if_absent(conn, spec, k8s_name=spec.name, upstream_execution_id=step.upstream_execution_id)
    elif decision.downstream is not None and existing is not None:
        carry_out(conn, existing, decision.downstream, now=now)
    return [decision.note] if decision.note else []


def _execution(record: repo.WorkItemRecord, execution_id: str, **values: Any) -> repo.ExecutionRecord:
    return repo.ExecutionRecord(
        execution_id=execution_id,
        work_item_id=record.id,
        domain=record.domain,
        pipeline=record.pipeline,
        partition_key=record.partition_key,
        backend=BACKEND,
        **values,
    )
