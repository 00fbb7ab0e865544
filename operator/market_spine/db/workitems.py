"""Repository for ``core_work_items`` and ``core_executions``: the only SQL about work items.

Called by the local backend (``services.queue``, ``services.worker``: enqueue, claim with
``FOR UPDATE SKIP LOCKED``, leases, attempts) and by the operator's database mirror
(``upsert_mirror``/``upsert_execution``, idempotent so a replayed or late sync never
double-counts). States are decided by ``core.lifecycle``; this module stores its decisions, and
every write of one is compare-and-set: :func:`save` writes only if the row still has the
``version`` the decision was planned from, and raises :class:`~market_spine.errors.ChangedMeanwhile`
otherwise, so a late writer never overwrites a newer decision (the caller re-reads and re-plans).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from market_spine.core.backoff import RetryPolicy
from market_spine.core.lifecycle import Item
from market_spine.core.states import WorkState
from market_spine.core.workitem import FinraPartition, WorkItemSpec, item_ref
from market_spine.db.schema import core_executions, core_manifest, core_work_items
from market_spine.errors import ChangedMeanwhile

T = core_work_items
E = core_executions

# The queue's order, most urgent first, as ``core.lifecycle.queue_order`` orders it in Python:
# higher priority, then the earlier desired time, then the older item, then the name (the id last,
# for rows without one). tests/db/test_queue_order.py holds the two to the same order.
QUEUE_ORDER = (T.c.priority.desc(), T.c.desired_at, T.c.created_at, T.c.k8s_name, T.c.id)


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
    version: int = 0
    total_attempts: int = 0
    state_reason: str | None = None
    state_message: str | None = None
    upstream_execution_id: str | None = None
    started_at: datetime | None = None
    locked_at: datetime | None = None
    lease_expires_at: datetime | None = None
    deadline_at: datetime | None = None
    active_deadline_seconds: int | None = None

    @property
    def partition(self) -> FinraPartition:
        return FinraPartition.model_validate_json(self.partition_key)

    @property
    def ref(self) -> str:
        return item_ref(self.pipeline, self.partition)

    @property
    def uid(self) -> str:
        """Never reused, even by a row of a database that was reset: execution ids derive from it."""
        return f"local:{self.id}:{self.created_at.isoformat()}"

    def item(self) -> Item:
        """The lifecycle's view of this row."""
        return Item(
            ref=self.ref,
            pipeline=self.pipeline,
            params=self.params,
            chain=self.chain,
            max_attempts=self.max_attempts,
            retry=self.retry,
            desired_at=self.desired_at,
            state=self.state,
            attempts=self.attempt_count,
            total_attempts=self.total_attempts,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            reason=self.state_reason,
            message=self.state_message,
            current_execution_id=self.current_execution_id,
            latest_execution_id=self.latest_execution_id,
            capture_id=self.capture_id,
            upstream_execution_id=self.upstream_execution_id,
            started_at=self.started_at,
            completed_at=self.completed_at,
            changed_at=self.updated_at,
        )

    def spec(self) -> WorkItemSpec:
        return WorkItemSpec(
            domain=self.domain,
            pipeline=self.pipeline,
            partition=self.partition,
            params=self.params,
            priority=self.priority,
            desired_at=self.desired_at,
            max_attempts=self.max_attempts,
            retry=self.retry,
            active_deadline_seconds=self.active_deadline_seconds,
            chain=self.chain,
        )

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
            version=m["version"],
            total_attempts=m["total_attempts"],
            state_reason=m["state_reason"],
            state_message=m["state_message"],
            upstream_execution_id=m["upstream_execution_id"],
            started_at=m["started_at"],
            locked_at=m["locked_at"],
            lease_expires_at=m["lease_expires_at"],
            deadline_at=m["deadline_at"],
            active_deadline_seconds=m["active_deadline_seconds"],
        )


def item_values(item: Item) -> dict[str, Any]:
    """The columns a lifecycle decision sets (params: a chain points an item at a new capture)."""
    return {
        "state": item.state.value,
        "params": dict(item.params),
        "attempt_count": item.attempts,
        "total_attempts": item.total_attempts,
        "next_attempt_at": item.next_attempt_at,
        "last_error": item.last_error,
        "state_reason": item.reason,
        "state_message": item.message,
        "current_execution_id": item.current_execution_id,
        "latest_execution_id": item.latest_execution_id,
        "capture_id": item.capture_id,
        "upstream_execution_id": item.upstream_execution_id,
        "started_at": item.started_at,
        "completed_at": item.completed_at,
    }


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
        "active_deadline_seconds": spec.active_deadline_seconds,
    }
    if spec.desired_at is not None:
        values["desired_at"] = spec.desired_at
    return values


def insert_if_absent(
    conn: Connection,
    spec: WorkItemSpec,
    *,
    k8s_namespace: str | None = None,
    k8s_name: str | None = None,
    upstream_execution_id: str | None = None,
) -> tuple[WorkItemRecord, bool]:
    """Insert a PENDING work item unless its (domain, pipeline, partition) exists; return (row, created)."""
    values = _spec_values(spec) | {
        "k8s_namespace": k8s_namespace,
        "k8s_name": k8s_name,
        "upstream_execution_id": upstream_execution_id,
    }
    stmt = (
        insert(T).values(**values).on_conflict_do_nothing(index_elements=[T.c.domain, T.c.pipeline, T.c.partition_key])
    )
    created = conn.execute(stmt.returning(T.c.id)).first() is not None
    record = get_by_key(conn, spec.domain, spec.pipeline, spec.partition_key)
    assert record is not None  # inserted now or before, in this transaction's snapshot
    return record, created


def get_by_key(
    conn: Connection, domain: str, pipeline: str, partition_key: str, *, for_update: bool = False
) -> WorkItemRecord | None:
    stmt = select(T).where(T.c.domain == domain, T.c.pipeline == pipeline, T.c.partition_key == partition_key)
    if for_update:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
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
    stmt = select(T).order_by(*QUEUE_ORDER).limit(limit)
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


def runnable(conn: Connection, now: datetime) -> WorkItemRecord | None:
    """Lock the most urgent item that is due now (PENDING past its desired time, or RETRY_WAIT past
    its backoff), skipping rows another worker has locked. The caller wakes and claims it through
    ``core.lifecycle``."""
    pending = and_(T.c.state == WorkState.PENDING.value, T.c.desired_at <= now)
    # As ``core.lifecycle.is_due``: a RETRY_WAIT item without a next attempt time is due.
    waited = and_(
        T.c.state == WorkState.RETRY_WAIT.value, or_(T.c.next_attempt_at.is_(None), T.c.next_attempt_at <= now)
    )
    row = conn.execute(
        select(T).where(or_(pending, waited)).order_by(*QUEUE_ORDER).limit(1).with_for_update(skip_locked=True)
    ).first()
    return WorkItemRecord.from_row(row) if row else None


def _overdue(now: datetime) -> Select[Any]:
    """Running attempts whose lease or deadline has passed: lost, for the reaper and the doctor."""
    late = or_(T.c.lease_expires_at < now, T.c.deadline_at < now)
    return select(T).where(T.c.state == WorkState.RUNNING.value, late).order_by(T.c.lease_expires_at)


def overdue(conn: Connection, now: datetime, limit: int = 20) -> list[WorkItemRecord]:
    """Lock overdue running attempts (skipping rows locked elsewhere): the reaper ends them."""
    rows = conn.execute(_overdue(now).limit(limit).with_for_update(skip_locked=True))
    return [WorkItemRecord.from_row(r) for r in rows]


def overdue_in(conn: Connection, domain: str, now: datetime) -> list[WorkItemRecord]:
    """The domain's overdue running attempts, without locking them (the doctor reports them)."""
    return [WorkItemRecord.from_row(r) for r in conn.execute(_overdue(now).where(T.c.domain == domain))]


def save(conn: Connection, record: WorkItemRecord, item: Item, **extra: Any) -> WorkItemRecord:
    """Write ``item`` (a lifecycle decision) over ``record``, compare-and-set on the version it was
    read with; :class:`ChangedMeanwhile` if anyone wrote the row since. ``extra``: columns only the
    local backend has (lease, worker, deadline)."""
    values = item_values(item) | {"updated_at": item.changed_at or record.updated_at} | extra
    row = conn.execute(
        update(T)
        .where(T.c.id == record.id, T.c.version == record.version)
        .values(version=T.c.version + 1, **values)
        .returning(*T.c)
    ).first()
    if row is None:
        raise ChangedMeanwhile(
            f"the work item changed meanwhile: {record.ref} was {record.state.value} when read; read it again"
        )
    return WorkItemRecord.from_row(row)


def lock_attempt(conn: Connection, item_id: int, execution_id: str) -> WorkItemRecord | None:
    """Lock the item if ``execution_id`` is still its running attempt (else None: the attempt was
    cancelled, lost, released or ended by its deadline, and its result must not be kept)."""
    record = get_by_id(conn, item_id, for_update=True)
    if record is None or record.state is not WorkState.RUNNING or record.current_execution_id != execution_id:
        return None
    return record


def renew_lease(conn: Connection, item_id: int, execution_id: str, until: datetime) -> bool:
    """Extend the lease of a running attempt; False once the attempt is no longer the item's."""
    result = conn.execute(
        update(T)
        .where(
            T.c.id == item_id,
            T.c.state == WorkState.RUNNING.value,
            T.c.current_execution_id == execution_id,
        )
        .values(lease_expires_at=until, version=T.c.version + 1)
    )
    return bool(result.rowcount)


def upsert_mirror(
    conn: Connection,
    spec: WorkItemSpec,
    *,
    state: WorkState,
    attempt_count: int,
    updated_at: datetime,
    total_attempts: int = 0,
    state_reason: str | None = None,
    state_message: str | None = None,
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
    overwrites a newer one, so the database converges whatever order syncs arrive in. Like every
    write of a row, it bumps ``version``.
    """
    status = {
        "state": state.value,
        "attempt_count": attempt_count,
        "total_attempts": total_attempts,
        "state_reason": state_reason,
        "state_message": state_message,
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
    changed: dict[str, Any] = {k: stmt.excluded[k] for k in values if k not in ("domain", "pipeline", "partition_key")}
    stmt = stmt.on_conflict_do_update(
        index_elements=[T.c.domain, T.c.pipeline, T.c.partition_key],
        set_=changed | {"version": T.c.version + 1},
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


def executions_for(conn: Connection, item_id: int) -> list[Row[Any]]:
    return list(conn.execute(select(E).where(E.c.work_item_id == item_id).order_by(E.c.attempt)))


def work_item_id_for(conn: Connection, domain: str, pipeline: str, partition_key: str) -> int | None:
    return conn.execute(
        select(T.c.id).where(T.c.domain == domain, T.c.pipeline == pipeline, T.c.partition_key == partition_key)
    ).scalar()


def execution_capture(conn: Connection, execution_id: str) -> str | None:
    """The capture a finished execution wrote or read (recorded by the pipeline container)."""
    return conn.execute(select(E.c.capture_id).where(E.c.execution_id == execution_id)).scalar()


def stage_output(conn: Connection, record: WorkItemRecord, stage: str, execution_id: str) -> tuple[str, int] | None:
    """(capture id, row count) the execution recorded in ``core_manifest`` for its partition and
    stage, as seen inside the caller's transaction; None if it recorded nothing (yet)."""
    m = core_manifest.c
    row = conn.execute(
        select(m.capture_id, m.row_count).where(
            m.domain == record.domain,
            m.partition_key == record.partition_key,
            m.stage == stage,
            m.execution_id == execution_id,
        )
    ).first()
    return (row.capture_id, row.row_count) if row else None
