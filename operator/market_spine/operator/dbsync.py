"""The operator's mirror of work items into PostgreSQL (``core_work_items``, ``core_executions``).

Called by the reconciler after every status write it makes (:meth:`DbSync.record`) and by the
periodic resync (every ``SPINE_RESYNC_INTERVAL_SECONDS``, and once right after start-up), which
re-records every SpineWorkItem from its status. Kubernetes is the source of truth; the database is
a mirror that must converge:

* Writes never block reconciliation. ``record`` only puts the change into an in-memory outbox; a
  background task writes it. While PostgreSQL is down the outbox keeps the latest change per work
  item (and every attempt's execution), and the operator goes on creating Jobs and writing status.
* Nothing is lost: an entry leaves the outbox only after its transaction committed. The rows are
  written with ``db.workitems.upsert_mirror`` (monotonic in ``updated_at``, so a late or replayed
  write never overwrites a newer one) and ``upsert_execution`` (a finished execution is never
  reopened). A restart loses the outbox, but the start-up resync rebuilds it from the objects'
  status, including the last 20 attempts (``status.history``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from market_spine.core.resource import AttemptRecord, WorkItemResourceSpec, WorkItemStatus
from market_spine.core.states import WorkState
from market_spine.db import workitems as repo
from market_spine.db.engine import first_line
from market_spine.operator.metrics import Metrics

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name) of a SpineWorkItem
RETRY_DELAYS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)
BATCH = 200  # work items per transaction
# Errors that mean "PostgreSQL is not reachable right now": keep the change and retry later.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, OSError)


@dataclass(frozen=True)
class MirrorUpdate:
    """The row of ``core_work_items`` for one work item, as of ``updated_at``."""

    namespace: str
    name: str
    spec: WorkItemResourceSpec
    state: WorkState
    attempt_count: int
    updated_at: datetime
    total_attempts: int
    reason: str | None
    message: str | None
    next_attempt_at: datetime | None
    last_error: str | None
    current_execution_id: str | None
    latest_execution_id: str | None
    capture_id: str | None
    completed_at: datetime | None

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @classmethod
    def from_status(
        cls, namespace: str, name: str, spec: WorkItemResourceSpec, status: WorkItemStatus, now: datetime
    ) -> MirrorUpdate:
        return cls(
            namespace=namespace,
            name=name,
            spec=spec,
            state=status.state or WorkState.PENDING,
            attempt_count=status.attempts,
            updated_at=status.state_changed_at or now,
            total_attempts=status.total_attempts,
            reason=status.reason,
            message=status.message,
            next_attempt_at=status.next_attempt_at,
            last_error=status.last_error,
            current_execution_id=status.current_execution_id,
            latest_execution_id=status.latest_execution_id,
            capture_id=status.capture_id,
            completed_at=status.completed_at,
        )


def execution_from(
    spec: WorkItemResourceSpec, record: AttemptRecord, capture_id: str | None = None
) -> repo.ExecutionRecord:
    return repo.ExecutionRecord(
        execution_id=record.execution_id,
        domain=spec.domain,
        pipeline=spec.pipeline,
        partition_key=spec.partition_key,
        backend="kubernetes",
        attempt=record.attempt,
        started_at=record.started_at,
        job_name=record.job,
        finished_at=record.finished_at,
        outcome=record.outcome.value,
        error=record.error,
        capture_id=capture_id,
    )


Batch = list[tuple[MirrorUpdate, list[repo.ExecutionRecord]]]
_RANK = {"RUNNING": 0, "SUCCEEDED": 1, "FAILED": 1, "CANCELLED": 1}


class DbSync:
    def __init__(
        self,
        engine: Engine,
        *,
        metrics: Metrics,
        executor: Executor,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        coalesce: float = 0.2,
    ) -> None:
        self.engine = engine
        self.coalesce = coalesce
        self.metrics = metrics
        self.executor = executor
        self.retry_delays = tuple(retry_delays)
        self._items: dict[Key, MirrorUpdate] = {}
        self._executions: dict[Key, dict[str, repo.ExecutionRecord]] = {}
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.up = True
        self.last_error: str | None = None

    # --- producer side ----------------------------------------------------------------------

    def record(self, update: MirrorUpdate, executions: Sequence[repo.ExecutionRecord] = ()) -> None:
        """Queue a change for writing (latest wins per work item; executions merge by id)."""
        current = self._items.get(update.key)
        if current is None or current.updated_at <= update.updated_at:
            self._items[update.key] = update
        pending = self._executions.setdefault(update.key, {})
        for execution in executions:
            known = pending.get(execution.execution_id)
            if known is None or _RANK[execution.outcome] >= _RANK[known.outcome]:
                pending[execution.execution_id] = execution
        if not pending:
            del self._executions[update.key]
        self._idle.clear()
        self._kick.set()
        self.metrics.db_pending.set(len(self._items))

    def pending(self) -> int:
        return len(self._items)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until the outbox is empty (used at shutdown and by tests)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- consumer side ----------------------------------------------------------------------

    async def run(self) -> None:
        """Write the outbox forever: immediately when something is queued, with backoff on errors."""
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            await self._kick.wait()
            self._kick.clear()
            # Let a burst of changes gather: fewer, bigger transactions, and the operator's more
            # urgent work (Jobs, status) goes first.
            await asyncio.sleep(self.coalesce)
            while self._items:
                batch = self._take(BATCH)
                try:
                    await loop.run_in_executor(self.executor, self._write, batch)
                except UNAVAILABLE as exc:
                    self._put_back(batch)
                    self._failed(exc)
                    delay = self.retry_delays[min(failures, len(self.retry_delays) - 1)]
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                if failures or not self.up:
                    log.info("PostgreSQL is back: the mirror caught up")
                failures = 0
                self.up = True
                self.last_error = None
                self.metrics.db_up.set(1)
            self.metrics.db_pending.set(len(self._items))
            if not self._items:
                self._idle.set()

    def _failed(self, exc: BaseException) -> None:
        message = first_line(getattr(exc, "orig", None) or exc)
        if self.up:
            log.warning("PostgreSQL unavailable; keeping %d change(s) until it is back: %s", len(self._items), message)
        self.up = False
        self.last_error = message
        self.metrics.db_up.set(0)
        self.metrics.db_sync_errors.inc()
        self.metrics.db_pending.set(len(self._items))

    def _take(self, limit: int) -> Batch:
        batch = []
        for key in list(self._items)[:limit]:
            update = self._items.pop(key)
            executions = list(self._executions.pop(key, {}).values())
            batch.append((update, executions))
        return batch

    def _put_back(self, batch: Batch) -> None:
        for update, executions in batch:
            newer = self._items.get(update.key)
            if newer is None or newer.updated_at < update.updated_at:
                self._items[update.key] = update
            pending = self._executions.setdefault(update.key, {})
            for execution in executions:
                known = pending.get(execution.execution_id)
                if known is None or _RANK[known.outcome] < _RANK[execution.outcome]:
                    pending[execution.execution_id] = execution
            if not pending:
                del self._executions[update.key]

    def _write(self, batch: Batch) -> None:
        # Rows are written in one order, by work item name, whatever order changes arrived in: two
        # operators mirroring the same items at once then lock their rows in the same order and
        # wait for each other instead of deadlocking.
        batch = sorted(batch, key=lambda item: item[0].key)
        try:
            with self.engine.begin() as conn:
                for update, executions in batch:
                    self._write_one(conn, update, executions)
        except UNAVAILABLE:
            raise
        except SQLAlchemyError:
            # A row PostgreSQL refuses (not an outage): write the batch one item at a time, so one
            # bad item is reported and dropped instead of blocking the mirror forever.
            for update, executions in batch:
                try:
                    with self.engine.begin() as conn:
                        self._write_one(conn, update, executions)
                except UNAVAILABLE:
                    raise
                except SQLAlchemyError as exc:
                    self.metrics.db_sync_errors.inc()
                    log.error("dropping the mirror of %s/%s: %s", update.namespace, update.name, first_line(exc))

    @staticmethod
    def _write_one(conn: Connection, update: MirrorUpdate, executions: Sequence[repo.ExecutionRecord]) -> None:
        repo.upsert_mirror(
            conn,
            update.spec,
            state=update.state,
            attempt_count=update.attempt_count,
            updated_at=update.updated_at,
            total_attempts=update.total_attempts,
            state_reason=update.reason,
            state_message=update.message,
            next_attempt_at=update.next_attempt_at,
            last_error=update.last_error,
            current_execution_id=update.current_execution_id,
            latest_execution_id=update.latest_execution_id,
            capture_id=update.capture_id,
            completed_at=update.completed_at,
            k8s_namespace=update.namespace,
            k8s_name=update.name,
        )
        if not executions:
            return
        item_id = repo.work_item_id_for(conn, update.spec.domain, update.spec.pipeline, update.spec.partition_key)
        for execution in sorted(executions, key=lambda e: e.attempt or 0):
            record = replace(execution, work_item_id=item_id)
            try:
                with conn.begin_nested():
                    repo.upsert_execution(conn, record)
            except IntegrityError:
                # UNIQUE(work_item_id, attempt): an earlier SpineWorkItem of the same partition
                # (deleted, then enqueued again) used this attempt number. Keep the execution
                # (its Job name tells which one it was) under the item's next free number.
                taken = [row.attempt for row in repo.executions_for(conn, item_id)] if item_id is not None else []
                with conn.begin_nested():
                    repo.upsert_execution(conn, replace(record, attempt=max(taken, default=0) + 1))

    # --- reads ------------------------------------------------------------------------------

    def capture_of(self, execution_id: str) -> str | None:
        """The capture id the pipeline recorded for an execution; None if unknown or unreachable.
        Blocking: call it in the executor."""
        try:
            with self.engine.connect() as conn:
                return repo.execution_capture(conn, execution_id)
        except (*UNAVAILABLE, SQLAlchemyError) as exc:
            log.info("cannot read the capture of execution %s: %s", execution_id, first_line(exc))
            return None
