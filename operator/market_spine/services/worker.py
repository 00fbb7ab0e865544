"""The local worker: claims work items from PostgreSQL and runs their attempts in-process.

Called by ``spine worker`` and ``make demo``. Every state it writes is decided by
``core.lifecycle`` (the operator's planner calls the same functions) and written through
``services.decisions`` compare-and-set, so a work item behaves the same whichever backend runs it.

Guarantees, and how:

* **One attempt at a time per item.** Claims lock the row ``FOR UPDATE SKIP LOCKED``, so workers
  (threads or processes) never take the same item.
* **A claim is a lease.** It sets ``lease_expires_at``; a heartbeat thread renews it every third
  of ``lease_seconds``. Every worker's loop ends running attempts whose lease ran out as *lost*
  (``lifecycle.lost``, reason ``WorkerLost``: retried with backoff like any failure), so a worker
  killed with ``kill -9``, or cut off with its database, never leaves an item RUNNING forever.
* **A per-attempt deadline** (the item's ``active_deadline_seconds``, else
  ``SPINE_DEFAULT_ACTIVE_DEADLINE_SECONDS``): past it, the attempt fails with
  ``DeadlineExceeded`` and is stopped.
* **A stopped attempt writes nothing.** Each attempt runs on its own engine (its connections are
  named after it) whose commits are *fenced*: before a transaction of the stage commits, it locks
  the work item and checks that this attempt is still its running attempt; if it is not
  (cancelled, lost, past its deadline, released), the transaction rolls back. The stage's
  transaction that writes its manifest row also ends the attempt there (``lifecycle.succeeded``
  and the chain, in the same transaction), so data and state commit together or not at all.
  When the heartbeat finds the lease taken away, it stops the attempt: its next statement
  raises, and its running one is cancelled (``pg_cancel_backend``).
* **SIGTERM** (``stop`` set while serving): no new claims; running attempts get ``grace_seconds`` to
  finish, then are given back (``lifecycle.released``: PENDING again, the attempt not counted).
* **Database outages** are waited out with backoff, never a reason to exit: a failure that could
  not be recorded is recorded when the database is back, unless the attempt was ended meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from market_spine.config import Settings
from market_spine.core import lifecycle
from market_spine.core.lifecycle import DEADLINE_EXCEEDED, WORKER_LOST
from market_spine.core.stages import PIPELINE_STAGE
from market_spine.core.states import WorkState
from market_spine.db import workitems as repo
from market_spine.db.engine import first_line, make_engine
from market_spine.errors import ChangedMeanwhile, DatabaseUnavailable, SpineError
from market_spine.pipelines.registry import StageResult
from market_spine.services.decisions import Carried, carry_out
from market_spine.services.failures import describe
from market_spine.services.report import AttemptOutcome, WorkerReport, outcome_of
from market_spine.services.runs import run_stage

__all__ = ["AttemptOutcome", "Worker", "WorkerOptions", "WorkerReport"]

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
T = TypeVar("T")
UNAVAILABLE = (OperationalError, InterfaceError, DatabaseUnavailable, OSError)


@dataclass(frozen=True)
class WorkerOptions:
    lease_seconds: float = 60.0  # SPINE_WORKER_LEASE_SECONDS
    grace_seconds: float = 30.0  # SPINE_WORKER_GRACE_SECONDS: SIGTERM waits this long for running attempts
    default_deadline_seconds: int = 3600  # SPINE_DEFAULT_ACTIVE_DEADLINE_SECONDS
    reconnect_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    # How long a worker that stops when idle waits for an unreachable database before it gives
    # up (exit code 3); None = wait for ever (``spine worker`` without --until-idle).
    give_up_after: float | None = 60.0
    connect_timeout: int = 10  # SPINE_DB_CONNECT_TIMEOUT, for the attempts' own connections

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_seconds / 3

    @classmethod
    def from_settings(cls, settings: Settings, *, until_idle: bool) -> WorkerOptions:
        """The options the ``SPINE_*`` settings give: for ``spine worker`` and the demo alike."""
        return cls(
            lease_seconds=settings.worker_lease_seconds,
            grace_seconds=settings.worker_grace_seconds,
            default_deadline_seconds=settings.default_active_deadline_seconds,
            give_up_after=cls.give_up_after if until_idle else None,
            connect_timeout=settings.db_connect_timeout,
        )


class AttemptStopped(SpineError):
    """The attempt is no longer the work item's: cancelled, lost, past its deadline or released."""


# A stage runs on the attempt's fenced engine: (engine, claimed row, execution id, now) → result.
Stage = Callable[[Engine, repo.WorkItemRecord, str, datetime], StageResult]


def run_pipeline(engine: Engine, record: repo.WorkItemRecord, execution: str, now: datetime) -> StageResult:
    partition = record.partition
    return run_stage(
        engine, record.pipeline, partition.week, partition.tier, params=record.params, execution_id=execution, now=now
    )


@dataclass
class Attempt:
    """One running attempt of this worker."""

    record: repo.WorkItemRecord  # as claimed (state RUNNING)
    execution: str
    deadline_at: datetime
    engine: Engine | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    stopped_because: str | None = None
    ended: Carried | None = None  # set by the fence when the stage's transaction ended the attempt
    given_back: bool = False  # released by a stopping worker

    @property
    def application_name(self) -> str:
        return f"spine-attempt-{self.execution[:16]}"


class Worker:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        worker_id: str | None = None,
        on_outcome: Callable[[AttemptOutcome], None] | None = None,
        options: WorkerOptions | None = None,
        stage: Stage = run_pipeline,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.on_outcome = on_outcome
        self.options = options or WorkerOptions()
        self.stage = stage
        self._lock = threading.Lock()
        self._running: dict[str, Attempt] = {}
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._beating = threading.Event()

    # --- the loop ---------------------------------------------------------------------------

    def run_once(self) -> AttemptOutcome | None:
        """End overdue attempts of any worker, then claim and run one attempt; None when nothing
        is runnable now (or the worker is stopping). Outcomes of attempts ended here go to
        ``on_outcome`` too."""
        for outcome in self._retrying(self._reap):
            self._tell(outcome)
        attempt = self._retrying(self._claim)
        if attempt is None:
            return None
        outcome = self._run(attempt)
        if attempt.given_back:  # the worker is stopping, and reported it when it gave it back
            return None
        self._tell(outcome)
        return outcome

    def run_until_idle(self, concurrency: int = 1, stop: threading.Event | None = None) -> WorkerReport:
        """Run attempts until nothing is runnable now (items waiting on a backoff are left waiting)."""
        return self._serve(concurrency, None, stop or threading.Event())

    def run_forever(self, concurrency: int, poll_seconds: float, stop: threading.Event) -> WorkerReport:
        """Run attempts, polling every ``poll_seconds`` when idle, until ``stop`` is set."""
        return self._serve(concurrency, poll_seconds, stop)

    def _tell(self, outcome: AttemptOutcome) -> None:
        if self.on_outcome:
            with self._lock:
                self.on_outcome(outcome)

    def _serve(self, concurrency: int, poll_seconds: float | None, stop: threading.Event) -> WorkerReport:
        report = WorkerReport()
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                while not stop.is_set() and not self._stopping.is_set():
                    try:
                        outcome = self.run_once()
                    except Exception:
                        if poll_seconds is None:
                            raise
                        # A long-running worker outlives a bug too: the attempt it was ending is
                        # reaped when its lease runs out; it says so and goes on.
                        log.exception("worker %s: unexpected error; going on", self.worker_id)
                        stop.wait(poll_seconds)
                        continue
                    if outcome is not None:
                        with self._lock:
                            report.outcomes.append(outcome)
                    elif poll_seconds is None:
                        return
                    else:
                        stop.wait(poll_seconds)
            except BaseException as exc:  # recorded and re-raised by the serving thread
                errors.append(exc)
                stop.set()

        self._start_heartbeat()
        threads = [threading.Thread(target=loop, name=f"spine-worker-{i}", daemon=True) for i in range(concurrency)]
        try:
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads) and not stop.is_set():
                for thread in threads:
                    thread.join(0.1)
            if stop.is_set() and not errors:
                self._wind_down(threads, report)
        finally:
            self._beating.set()
        if errors:
            raise errors[0]
        return report

    def _wind_down(self, threads: list[threading.Thread], report: WorkerReport) -> None:
        """SIGTERM: no new claims; running attempts get the grace period, then are given back."""
        self._stopping.set()
        running = len(self._running)
        if running:
            log.warning(
                "worker %s stopping: waiting up to %.0fs for %d running attempt(s)",
                self.worker_id,
                self.options.grace_seconds,
                running,
            )
        limit = time.monotonic() + self.options.grace_seconds
        for thread in threads:
            thread.join(max(0.0, limit - time.monotonic()))
        for attempt in list(self._running.values()):
            outcome = self._release(attempt)
            if outcome is not None:
                self._tell(outcome)
                with self._lock:
                    report.outcomes.append(outcome)

    # --- retrying through database outages ---------------------------------------------------

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run ``action``, waiting out an unreachable database with backoff; give up (exit code 3)
        only after ``give_up_after`` seconds, if set."""
        delays = self.options.reconnect_delays
        started = time.monotonic()
        for tries in range(1_000_000):
            try:
                return action()
            except UNAVAILABLE as exc:
                waited = time.monotonic() - started
                limit = self.options.give_up_after
                if limit is not None and waited >= limit:
                    raise DatabaseUnavailable(
                        f"the database has been unreachable for {waited:.0f}s: {first_line(exc)}"
                    ) from exc
                delay = delays[min(tries, len(delays) - 1)]
                if tries == 0:
                    log.warning("database unreachable (%s); retrying every few seconds", first_line(exc))
                time.sleep(delay)
        raise AssertionError("unreachable")

    # --- claiming -----------------------------------------------------------------------------

    def _claim(self) -> Attempt | None:
        if self._stopping.is_set():
            return None
        now = self.clock()
        with self.engine.begin() as conn:
            record = repo.runnable(conn, now)
            if record is None:
                return None
            item = record.item()
            woken = lifecycle.wake(item, now=now) if item.state is WorkState.RETRY_WAIT else None
            if woken is not None:
                item = woken.item
            execution = lifecycle.execution_id(record.uid, item.total_attempts + 1)
            claimed = lifecycle.claim(item, now=now, execution=execution)
            decision = woken.then(claimed) if woken else claimed
            seconds = record.active_deadline_seconds or self.options.default_deadline_seconds
            deadline_at = now + timedelta(seconds=seconds)
            carried = carry_out(
                conn,
                record,
                decision,
                now=now,
                locked_by=self.worker_id,
                locked_at=now,
                lease_expires_at=now + timedelta(seconds=self.options.lease_seconds),
                deadline_at=deadline_at,
            )
        attempt = Attempt(carried.record, execution, deadline_at)
        with self._lock:
            self._running[execution] = attempt
        return attempt

    # --- running one attempt -----------------------------------------------------------------

    def _run(self, attempt: Attempt) -> AttemptOutcome:
        record = attempt.record
        attempt.engine = self._fenced_engine(attempt)
        try:
            result = self.stage(attempt.engine, record, attempt.execution, self.clock())
        except Exception as exc:  # every failure is recorded; none may kill the worker
            log.info("attempt %s of %s failed: %s", attempt.execution, record.ref, exc)
            error = exc
            return self._retrying(lambda: self._failed(attempt, error))
        else:
            return self._retrying(lambda: self._succeeded(attempt, result))
        finally:
            with self._lock:
                self._running.pop(attempt.execution, None)
            attempt.engine.dispose()

    def _fenced_engine(self, attempt: Attempt) -> Engine:
        """The attempt's own engine: its connections carry the attempt's name (so the heartbeat can
        cancel what they run), every statement first checks the attempt was not stopped, and every
        commit is fenced (see the module docstring)."""
        url = self.engine.url.render_as_string(hide_password=False)
        engine = make_engine(
            url,
            connect_timeout=self.options.connect_timeout,
            application_name=attempt.application_name,
            poolclass=NullPool,
        )

        @event.listens_for(engine, "before_cursor_execute")
        def _stopped(*_args: Any) -> None:
            if attempt.stop_event.is_set():
                raise AttemptStopped(attempt.stopped_because or "the attempt was stopped")

        @event.listens_for(engine, "commit")
        def _fence(conn: Connection) -> None:
            self._fence(conn, attempt)

        return engine

    def _fence(self, conn: Connection, attempt: Attempt) -> None:
        """Runs inside each commit of the stage, before it happens: raising rolls it back."""
        record = repo.lock_attempt(conn, attempt.record.id, attempt.execution)
        if record is None:
            raise AttemptStopped(
                f"attempt {attempt.execution} of {attempt.record.ref} no longer counts "
                "(the item was cancelled, or the attempt was lost or ran past its deadline); nothing it wrote is kept"
            )
        stage = PIPELINE_STAGE.get(record.pipeline)
        output = repo.stage_output(conn, record, stage.value, attempt.execution) if stage else None
        if output is None:
            return  # not the stage's last transaction: it only had to be the item's attempt still
        attempt.ended = self._complete(conn, record, attempt, *output)

    def _complete(
        self, conn: Connection, current: repo.WorkItemRecord, attempt: Attempt, capture: str, rows: int
    ) -> Carried:
        """End the attempt as succeeded (``lifecycle.succeeded``), in the caller's transaction."""
        now = self.clock()
        decision = lifecycle.succeeded(
            current.item(),
            now=now,
            execution=attempt.execution,
            capture_id=capture,
            read_upstream=attempt.record.upstream_execution_id,  # what it read: the item as claimed
        )
        return carry_out(conn, current, decision, now=now, row_count=rows)

    def _succeeded(self, attempt: Attempt, result: StageResult) -> AttemptOutcome:
        carried = attempt.ended
        if carried is None:  # a stage that wrote no manifest row: end the attempt now
            with self.engine.begin() as conn:
                current = repo.lock_attempt(conn, attempt.record.id, attempt.execution)
                if current is None:
                    return self._taken_away(attempt)
                carried = self._complete(conn, current, attempt, result.capture_id, result.row_count)
        return outcome_of(attempt.record, carried, result=result)

    def _failed(self, attempt: Attempt, exc: Exception) -> AttemptOutcome:
        if attempt.stop_event.is_set() or isinstance(exc, AttemptStopped):
            return self._taken_away(attempt)
        failure = describe(exc)
        now = self.clock()
        with self.engine.begin() as conn:
            current = repo.lock_attempt(conn, attempt.record.id, attempt.execution)
            if current is None:
                return self._taken_away(attempt)
            decision = lifecycle.failed(
                current.item(),
                now=now,
                execution=attempt.execution,
                reason=failure.reason,
                message=failure.error,
                retryable=failure.retryable,
            )
            carried = carry_out(conn, current, decision, now=now)
        return outcome_of(attempt.record, carried, failure=failure)

    def _taken_away(self, attempt: Attempt) -> AttemptOutcome:
        """The attempt was ended by someone else (a cancel, a reaper, its deadline): say how."""
        with self.engine.connect() as conn:
            current = repo.get_by_id(conn, attempt.record.id)
        assert current is not None
        because = attempt.stopped_because or "the item no longer counted this attempt"
        return outcome_of(attempt.record, Carried(current), stopped=because)

    # --- leases, deadlines, the reaper --------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        self._beating.clear()
        self._heartbeat = threading.Thread(target=self._beat_loop, name="spine-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat_loop(self) -> None:
        while not self._beating.wait(self.options.heartbeat_seconds):
            for attempt in list(self._running.values()):
                try:
                    self._beat(attempt)
                except UNAVAILABLE as exc:  # the lease may run out; the reaper then decides
                    log.warning("heartbeat of %s failed: %s", attempt.record.ref, first_line(exc))
                except Exception:
                    log.exception("heartbeat of %s failed", attempt.record.ref)

    def _beat(self, attempt: Attempt) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            if now >= attempt.deadline_at:
                current = repo.lock_attempt(conn, attempt.record.id, attempt.execution)
                if current is not None:  # the attempt's own thread reports it, once it has stopped
                    carry_out(conn, current, _deadline(current, now), now=now)
                because = _deadline_text(attempt.record)
            elif repo.renew_lease(conn, attempt.record.id, attempt.execution, now + self._lease()):
                return
            else:
                current = repo.get_by_id(conn, attempt.record.id)
                because = _why_gone(current)
        self._stop_attempt(attempt, because)

    def _lease(self) -> timedelta:
        return timedelta(seconds=self.options.lease_seconds)

    def _stop_attempt(self, attempt: Attempt, because: str) -> None:
        """Stop an attempt that is no longer the item's: its next statement raises, and the one it
        runs now is cancelled. Whatever it would still commit is rolled back by the fence."""
        if attempt.stop_event.is_set():
            return
        attempt.stopped_because = because
        attempt.stop_event.set()
        log.info("stopping attempt %s of %s: %s", attempt.execution, attempt.record.ref, because)
        with contextlib.suppress(*UNAVAILABLE, DBAPIError), self.engine.begin() as conn:
            conn.execute(
                text("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": attempt.application_name},
            )

    def _reap(self) -> list[AttemptOutcome]:
        """End running attempts of any worker whose lease or deadline passed (this worker's own are
        watched by its heartbeat)."""
        now = self.clock()
        outcomes = []
        with self.engine.begin() as conn:
            for record in repo.overdue(conn, now):
                if record.current_execution_id in self._running:
                    continue
                if record.deadline_at is not None and record.deadline_at <= now:
                    decision, because = _deadline(record, now), _deadline_text(record)
                else:
                    expired = record.lease_expires_at.isoformat() if record.lease_expires_at else "?"
                    because = f"worker {record.locked_by} stopped renewing its lease (it expired at {expired})"
                    decision = lifecycle.lost(record.item(), now=now, reason=WORKER_LOST, message=because)
                carried = carry_out(conn, record, decision, now=now)
                outcomes.append(outcome_of(record, carried, stopped=because))
        return outcomes

    def _release(self, attempt: Attempt) -> AttemptOutcome | None:
        """Give an unfinished attempt back (the worker is stopping): PENDING again, not counted."""
        because = f"worker {self.worker_id} is stopping"
        try:
            with self.engine.begin() as conn:
                current = repo.lock_attempt(conn, attempt.record.id, attempt.execution)
                if current is None:
                    return None
                now = self.clock()
                decision = lifecycle.released(current.item(), now=now, execution=attempt.execution, message=because)
                carried = carry_out(conn, current, decision, now=now)
                attempt.given_back = True
        except (*UNAVAILABLE, ChangedMeanwhile) as exc:  # its lease runs out instead; a reaper decides
            log.warning("could not give back %s: %s", attempt.record.ref, first_line(exc))
            return None
        finally:
            self._stop_attempt(attempt, because)
        return outcome_of(attempt.record, carried, stopped=because)


def _deadline(record: repo.WorkItemRecord, now: datetime) -> lifecycle.Decision:
    return lifecycle.failed(
        record.item(),
        now=now,
        execution=record.current_execution_id,
        reason=DEADLINE_EXCEEDED,
        message=_deadline_text(record),
        stop=True,
    )


def _deadline_text(record: repo.WorkItemRecord) -> str:
    started = record.started_at or record.locked_at
    limit = f" of {(record.deadline_at - started).total_seconds():.0f}s" if record.deadline_at and started else ""
    return f"the attempt ran past its deadline{limit} and was stopped; nothing it wrote was kept"


def _why_gone(record: repo.WorkItemRecord | None) -> str:
    if record is None:
        return "the work item was deleted"
    if record.state is WorkState.CANCELLED:
        return "the item was cancelled while the attempt ran"
    return f"the attempt no longer counts: the item is {record.state.value} now"
