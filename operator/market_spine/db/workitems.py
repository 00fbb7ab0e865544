"""Repository for ``core_work_items`` and ``core_executions``: the only SQL about work items.

Called by ``services.queue`` (the local backend: enqueue, claim with ``FOR UPDATE SKIP LOCKED``,
finish attempts) and by the operator's database mirror (``upsert_mirror``/``upsert_execution``,
idempotent so a replayed or late sync never double-counts). State changes are decided by
``core.states``; this module only stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from market_spine.core.backoff import RetryPolicy
from market_spine.core.states import WorkState
from market_spine.core.workitem import WorkItemSpec
from market_spine.db.schema import core_executions, core_work_items

T = core_work_items
E = core_executions


@dataclass(frozen=True)
class WorkItemRecord:
    """A row of ``core_work_items`` as the services see it."""

    id: int
    domain: str
    pipeline: str
    partition_key: str
    params: dict[str, str]
    state: WorkState
    priority: int
    desired_at: datetime
    attempt_count: int
    max_attempts: int
    retry: RetryPolicy
    next_attempt_at: datetime | None
    last_error: str | None
    current_execution_id: str | None
    latest_execution_id: str | None
    capture_id: str | None
    chain: bool
    locked_by: str | None
    k8s_name: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> WorkItemRecord:
        m = row._mapping
        return cls(
            id=m["id"],
            domain=m["domain"],
            pipeline=m["pipeline"],
            partition_key=m["partition_key"],
            params=dict(m["params"] or {}),
            state=WorkState(m["state"]),
            priority=m["priority"],
            desired_at=m["desired_at"],
            attempt_count=m["attempt_count"],
            max_attempts=m["max_attempts"],
            retry=RetryPolicy(
                backoff_seconds=m["backoff_seconds"],
                factor=m["backoff_factor"],
                max_backoff_seconds=m["max_backoff_seconds"],
                jitter_seconds=m["jitter_seconds"],
            ),
            next_attempt_at=m["next_attempt_at"],
            last_error=m["last_error"],
            current_execution_id=m["current_execution_id"],
            latest_execution_id=m["latest_execution_id"],
            capture_id=m["capture_id"],
            chain=m["chain"],
            locked_by=m["locked_by"],
            k8s_name=m["k8s_name"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            completed_at=m["completed_at"],
        )


def _spec_values(spec: WorkItemSpec) -> dict[str, Any]:
    values: dict[str, Any] = {
        "domain": spec.domain,
        "pipeline": spec.pipeline,
        "partition_key": spec.partition_key,
        "params": dict(spec.params),
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "backoff_seconds": spec.retry.backoff_seconds,
        "backoff_factor": spec.retry.factor,
        "max_backoff_seconds": spec.retry.max_backoff_seconds,
        "jitter_seconds": spec.retry.jitter_seconds,
        "chain": spec.chain,
    }
    if spec.desired_at is not None:
        values["desired_at"] = spec.desired_at
    return values


def insert_if_absent(
    conn: Connection, spec: WorkItemSpec, *, k8s_namespace: str | None = None, k8s_name: str | None = None
) -> tuple[WorkItemRecord, bool]:
    """Insert a PENDING work item unless its (domain, pipeline, partition) exists; return (row, created)."""
    values = _spec_values(spec) | {"k8s_namespace": k8s_namespace, "k8s_name": k8s_name}
    stmt = (
        insert(T).values(**values).on_conflict_do_nothing(index_elements=[T.c.domain, T.c.pipeline, T.c.partition_key])
    )
    created = conn.execute(stmt.returning(T.c.id)).first() is not None
    record = get_by_key(conn, spec.domain, spec.pipeline, spec.partition_key)
    assert record is not None  # inserted now or before, in this transaction's snapshot
    return record, created


def get_by_key(conn: Connection, domain: str, pipeline: str, partition_key: str) -> WorkItemRecord | None:
    row = conn.execute(
        select(T).where(T.c.domain == domain, T.c.pipeline == pipeline, T.c.partition_key == partition_key)
    ).first()
    return WorkItemRecord.from_row(row) if row else None


def get_by_id(conn: Connection, item_id: int, *, for_update: bool = False) -> WorkItemRecord | None:
    stmt = select(T).where(T.c.id == item_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return WorkItemRecord.from_row(row) if row else None


def list_items(
    conn: Connection,
    *,
    domain: str | None = None,
    states: list[WorkState] | None = None,
    pipeline: str | None = None,
    limit: int = 200,
) -> list[WorkItemRecord]:
    stmt = select(T).order_by(T.c.priority.desc(), T.c.desired_at, T.c.id).limit(limit)
    if domain:
        stmt = stmt.where(T.c.domain == domain)
    if states:
        stmt = stmt.where(T.c.state.in_([s.value for s in states]))
    if pipeline:
        stmt = stmt.where(T.c.pipeline == pipeline)
    return [WorkItemRecord.from_row(r) for r in conn.execute(stmt)]


def count_by_state(conn: Connection, domain: str | None = None) -> dict[WorkState, int]:
    stmt = select(T.c.state, func.count()).group_by(T.c.state)
    if domain:
        stmt = stmt.where(T.c.domain == domain)
    counts = {state: 0 for state in WorkState}
    for state, n in conn.execute(stmt):
        counts[WorkState(state)] = n
    return counts


def wake_due(conn: Connection, now: datetime) -> int:
    """RETRY_WAIT items whose backoff has elapsed become PENDING (the WAKE transition)."""
    result = conn.execute(
        update(T)
        .where(T.c.state == WorkState.RETRY_WAIT.value, T.c.next_attempt_at <= now)
        .values(state=WorkState.PENDING.value, updated_at=now)
    )
    return result.rowcount or 0


def claim_next(conn: Connection, worker_id: str, now: datetime) -> WorkItemRecord | None:
    """Lock the most urgent runnable PENDING item (priority, then desired_at), skipping locked rows."""
    row = conn.execute(
        select(T)
        .where(
            T.c.state == WorkState.PENDING.value,
            T.c.desired_at <= now,
            or_(T.c.next_attempt_at.is_(None), T.c.next_attempt_at <= now),
        )
        .order_by(T.c.priority.desc(), T.c.desired_at, T.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    return WorkItemRecord.from_row(row) if row else None


def update_item(conn: Connection, item_id: int, **values: Any) -> None:
    """Write the given columns of one item (state transitions are decided by the caller)."""
    if "state" in values and isinstance(values["state"], WorkState):
        values["state"] = values["state"].value
    conn.execute(update(T).where(T.c.id == item_id).values(**values))


def upsert_mirror(
    conn: Connection,
    spec: WorkItemSpec,
    *,
    state: WorkState,
    attempt_count: int,
    updated_at: datetime,
    next_attempt_at: datetime | None = None,
    last_error: str | None = None,
    current_execution_id: str | None = None,
    latest_execution_id: str | None = None,
    capture_id: str | None = None,
    completed_at: datetime | None = None,
    k8s_namespace: str | None = None,
    k8s_name: str | None = None,
    locked_by: str | None = None,
) -> None:
    """Make the row for ``spec`` equal to the operator's view of it (insert or overwrite).

    Idempotent, and monotonic in ``updated_at``: a late replay of an older status never
    overwrites a newer one, so the database converges whatever order syncs arrive in.
    """
    status = {
        "state": state.value,
        "attempt_count": attempt_count,
        "next_attempt_at": next_attempt_at,
        "last_error": last_error,
        "current_execution_id": current_execution_id,
        "latest_execution_id": latest_execution_id,
        "capture_id": capture_id,
        "completed_at": completed_at,
        "updated_at": updated_at,
        "k8s_namespace": k8s_namespace,
        "k8s_name": k8s_name,
        "locked_by": locked_by,
    }
    values = _spec_values(spec) | status
    stmt = insert(T).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[T.c.domain, T.c.pipeline, T.c.partition_key],
        set_={k: stmt.excluded[k] for k in values if k not in ("domain", "pipeline", "partition_key")},
        where=T.c.updated_at <= stmt.excluded.updated_at,
    )
    conn.execute(stmt)


@dataclass(frozen=True)
class ExecutionRecord:
    execution_id: str
    domain: str
    pipeline: str
    partition_key: str
    backend: str
    attempt: int | None = None
    started_at: datetime | None = None
    work_item_id: int | None = None
    job_name: str | None = None
    finished_at: datetime | None = None
    outcome: str = "RUNNING"
    error: str | None = None
    capture_id: str | None = None
    row_count: int | None = None


def upsert_execution(conn: Connection, record: ExecutionRecord) -> None:
    """Insert or complete an execution row; a finished row is never reopened by a late RUNNING sync.

    The operator and the pipeline container both write the same execution and neither knows all
    of it (the container has the capture, the operator the Job and attempt), so a field left as
    None is not written: it never erases what the other writer recorded.
    """
    values = {k: getattr(record, k) for k in record.__dataclass_fields__}
    known = {k: v for k, v in values.items() if v is not None}
    stmt = insert(E).values(**known)
    stmt = stmt.on_conflict_do_update(
        index_elements=[E.c.execution_id],
        set_={k: stmt.excluded[k] for k in known if k != "execution_id"},
        where=or_(E.c.outcome == "RUNNING", E.c.outcome == stmt.excluded.outcome),
    )
    conn.execute(stmt)


def next_attempt_number(conn: Connection, item_id: int) -> int:
    """The ordinal of the item's next execution, counted over its whole life.

    ``attempt_count`` restarts at 0 on an admin retry (a fresh budget), but execution rows and
    Job names must never repeat, so they number attempts across every budget.
    """
    last = conn.execute(select(func.max(E.c.attempt)).where(E.c.work_item_id == item_id)).scalar()
    return int(last or 0) + 1


def executions_for(conn: Connection, item_id: int) -> list[Row[Any]]:
    return list(conn.execute(select(E).where(E.c.work_item_id == item_id).order_by(E.c.attempt)))


def work_item_id_for(conn: Connection, domain: str, pipeline: str, partition_key: str) -> int | None:
    return conn.execute(
        select(T.c.id).where(T.c.domain == domain, T.c.pipeline == pipeline, T.c.partition_key == partition_key)
    ).scalar()


def execution_capture(conn: Connection, execution_id: str) -> str | None:
    """The capture a finished execution wrote or read (recorded by the pipeline container)."""
    return conn.execute(select(E.c.capture_id).where(E.c.execution_id == execution_id)).scalar()
