"""The local worker: claims work items from PostgreSQL and runs their attempts in-process.

Called by ``spine worker`` and ``make demo``. It drives the same state machine
(``core.states``) and backoff (``core.backoff``) as the operator, so a work item behaves the same
whichever backend runs it. Claims use ``FOR UPDATE SKIP LOCKED``: several workers (threads or
processes) never take the same item.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from market_spine.core.backoff import decide_after_failure
from market_spine.core.stages import next_pipeline
from market_spine.core.states import Event, WorkState, transition
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db import workitems as repo
from market_spine.db.engine import first_line
from market_spine.errors import SpineError
from market_spine.services.runs import downstream_params, run_stage

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


@dataclass
class AttemptOutcome:
    item_id: int
    pipeline: str
    partition_key: str
    attempt: int
    state: WorkState
    error: str | None = None


@dataclass
class WorkerReport:
    outcomes: list[AttemptOutcome] = field(default_factory=list)

    def count(self, state: WorkState) -> int:
        return sum(1 for o in self.outcomes if o.state is state)


class Worker:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        worker_id: str | None = None,
        on_outcome: Callable[[AttemptOutcome], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.on_outcome = on_outcome
        self._lock = threading.Lock()

    def run_once(self) -> AttemptOutcome | None:
        """Claim and run one attempt; None when nothing is runnable now."""
        claimed = self._claim()
        if claimed is None:
            return None
        record, execution_id = claimed
        outcome = self._execute(record, execution_id)
        if self.on_outcome:
            with self._lock:
                self.on_outcome(outcome)
        return outcome

    def run_until_idle(self, concurrency: int = 1) -> WorkerReport:
        """Run attempts until nothing is runnable now (items waiting on a backoff are left waiting)."""
        report = WorkerReport()

        def loop() -> None:
            while (outcome := self.run_once()) is not None:
                with self._lock:
                    report.outcomes.append(outcome)

        if concurrency <= 1:
            loop()
        else:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="spine-worker") as pool:
                for future in [pool.submit(loop) for _ in range(concurrency)]:
                    future.result()
        return report

    def run_forever(self, concurrency: int, poll_seconds: float, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self.run_until_idle(concurrency).outcomes:
                stop.wait(poll_seconds)

    # --- one attempt ------------------------------------------------------------------------

    def _claim(self) -> tuple[repo.WorkItemRecord, str] | None:
        now = self.clock()
        with self.engine.begin() as conn:
            repo.wake_due(conn, now)
            record = repo.claim_next(conn, self.worker_id, now)
            if record is None:
                return None
            state = transition(record.state, Event.START)
            attempt = record.attempt_count + 1
            execution_id = uuid.uuid4().hex
            repo.update_item(
                conn,
                record.id,
                state=state,
                attempt_count=attempt,
                current_execution_id=execution_id,
                latest_execution_id=execution_id,
                locked_by=self.worker_id,
                locked_at=now,
                updated_at=now,
            )
            repo.upsert_execution(
                conn,
                repo.ExecutionRecord(
                    execution_id=execution_id,
                    work_item_id=record.id,
                    domain=record.domain,
                    pipeline=record.pipeline,
                    partition_key=record.partition_key,
                    attempt=repo.next_attempt_number(conn, record.id),
                    backend="local",
                    started_at=now,
                ),
            )
            claimed = repo.get_by_id(conn, record.id)
        assert claimed is not None
        return claimed, execution_id

    def _execute(self, record: repo.WorkItemRecord, execution_id: str) -> AttemptOutcome:
        partition = FinraPartition.model_validate_json(record.partition_key)
        started = self.clock()
        try:
            result = run_stage(
                self.engine,
                record.pipeline,
                partition.week,
                partition.tier,
                params=record.params,
                execution_id=execution_id,
                now=started,
            )
        except Exception as exc:  # every failure is recorded; none may kill the worker
            log.info("attempt %s of %s failed: %s", record.attempt_count, record.pipeline, exc)
            return self._fail(record, execution_id, exc)
        return self._succeed(record, execution_id, result.capture_id, result.row_count)

    def _succeed(
        self, record: repo.WorkItemRecord, execution_id: str, capture_id: str, row_count: int
    ) -> AttemptOutcome:
        now = self.clock()
        with self.engine.begin() as conn:
            state = transition(record.state, Event.SUCCEED)
            repo.update_item(
                conn,
                record.id,
                state=state,
                capture_id=capture_id,
                last_error=None,
                next_attempt_at=None,
                current_execution_id=None,
                locked_by=None,
                completed_at=now,
                updated_at=now,
            )
            repo.upsert_execution(
                conn, self._finished(record, execution_id, now, "SUCCEEDED", None, capture_id, row_count)
            )
            following = next_pipeline(record.pipeline) if record.chain else None
            if following:
                spec = WorkItemSpec(
                    domain=record.domain,
                    pipeline=following,
                    partition=FinraPartition.model_validate_json(record.partition_key),
                    params=downstream_params(record.params, capture_id),
                    priority=record.priority,
                    max_attempts=record.max_attempts,
                    retry=record.retry,
                    chain=True,
                )
                repo.insert_if_absent(conn, spec, k8s_name=spec.name)
        return AttemptOutcome(record.id, record.pipeline, record.partition_key, record.attempt_count, state)

    def _fail(self, record: repo.WorkItemRecord, execution_id: str, exc: Exception) -> AttemptOutcome:
        now = self.clock()
        error = f"{type(exc).__name__}: {first_line(exc)}"
        # A failure another attempt cannot fix (a bad file, an unknown pipeline) goes straight to FAILED.
        permanent = isinstance(exc, SpineError) and not exc.retryable
        decision = decide_after_failure(
            attempts=record.attempt_count,
            max_attempts=record.max_attempts,
            policy=record.retry,
            now=now,
            retryable=not permanent,
        )
        with self.engine.begin() as conn:
            state = transition(record.state, decision.event)
            repo.update_item(
                conn,
                record.id,
                state=state,
                last_error=error,
                next_attempt_at=decision.next_attempt_at,
                current_execution_id=None,
                locked_by=None,
                updated_at=now,
                completed_at=now if state is WorkState.FAILED else None,
            )
            repo.upsert_execution(conn, self._finished(record, execution_id, now, "FAILED", error, None, None))
        return AttemptOutcome(record.id, record.pipeline, record.partition_key, record.attempt_count, state, error)

    @staticmethod
    def _finished(
        record: repo.WorkItemRecord,
        execution_id: str,
        now: datetime,
        outcome: str,
        error: str | None,
        capture_id: str | None,
        row_count: int | None,
    ) -> repo.ExecutionRecord:
        return repo.ExecutionRecord(
            execution_id=execution_id,
            work_item_id=record.id,
            domain=record.domain,
            pipeline=record.pipeline,
            partition_key=record.partition_key,
            backend="local",
            finished_at=now,
            outcome=outcome,
            error=error,
            capture_id=capture_id,
            row_count=row_count,
        )
