"""Scheduling decisions for one SpineWorkItem: from what the operator observes to what it does next.

Pure (standard library and pydantic only), so every decision of the operator is a plain function
call that tests can make with any clock. Called by ``market_spine.operator.reconciler`` for each
work item it reconciles; the reconciler gathers an :class:`Observation` (the item, the Job of its
current attempt, the clock, whether a concurrency slot is free), calls :func:`plan`, and carries
out the resulting :class:`Plan` (create or delete a Job, write the status, post events, mirror the
change into PostgreSQL).

This module decides nothing about the lifecycle itself: each event (an attempt started,
succeeded, failed or was lost, a cancel, an admin retry, a wake, a dismissal) is passed to
``core.lifecycle``, the same functions the local worker calls, and the planner only translates
between a SpineWorkItem and the lifecycle's :class:`~market_spine.core.lifecycle.Item`, and adds
what exists only on Kubernetes: what a Job's status means (deleted, never started, stuck past its
deadline, refused by the API server), Job names, conditions and Event wording.

The planner is level-triggered: given the same observation twice it returns the same plan, and
once a plan has been carried out, planning again from the new status changes nothing. That is what
makes duplicate watch events, restarts and two operator replicas harmless.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from market_spine.core import lifecycle
from market_spine.core.lifecycle import DEADLINE_EXCEEDED, Decision, execution_id, seconds_text
from market_spine.core.naming import job_name
from market_spine.core.resource import (
    MAX_ERROR_CHARS,
    MAX_HISTORY,
    AttemptOutcome,
    AttemptRecord,
    Condition,
    ConditionStatus,
    ConditionType,
    WorkItemResourceSpec,
    WorkItemStatus,
)
from market_spine.core.states import Event, IllegalTransition, WorkState, can

__all__ = ["DEADLINE_EXCEEDED", "execution_id"]

# Failure reasons only Kubernetes has (CamelCase, used in events, conditions and status.history).
JOB_FAILED = "JobFailed"
JOB_DELETED = "JobDeleted"
POD_START_TIMEOUT = "PodStartTimeout"
JOB_REJECTED = "JobRejected"
INVALID_SPEC = "InvalidSpec"
UNKNOWN_PIPELINE = "UnknownPipeline"
DUPLICATE = "DuplicateWorkItem"


@dataclass(frozen=True)
class JobObservation:
    """What the operator knows about the Job of the current attempt."""

    name: str
    exists: bool  # False only once the API server answered 404
    started: bool = False  # a pod of the Job got to run
    succeeded: bool = False  # condition Complete=True
    failed: bool = False  # condition Failed=True
    reason: str | None = None  # the Failed condition's reason (DeadlineExceeded, BackoffLimitExceeded…)
    message: str | None = None  # the Failed condition's message
    exit_code: int | None = None  # of the pipeline container, when its pod reported one
    termination_message: str | None = None  # the pod's termination message (or log tail)
    capture_id: str | None = None  # the capture the pipeline reported, on success
    # Could another attempt succeed? False when the pipeline exited with the code of a failure no
    # retry fixes (``errors.PERMANENT_EXIT_CODES``: a bad option, an unusable file), as the local
    # worker decides from the exception itself.
    retryable: bool = True


@dataclass(frozen=True)
class Timing:
    """Operator-wide time limits (``Settings``)."""

    start_timeout: timedelta  # a pod must start within this after its Job was created
    default_deadline: timedelta  # activeDeadlineSeconds when the spec sets none
    # How long past its deadline a started Job may stay unfinished before the operator stops
    # waiting for the Job controller and fails the attempt itself.
    stuck_grace: timedelta = timedelta(minutes=5)

    def deadline(self, spec: WorkItemResourceSpec | None) -> timedelta:
        if spec is not None and spec.active_deadline_seconds is not None:
            return timedelta(seconds=spec.active_deadline_seconds)
        return self.default_deadline


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: WorkItemResourceSpec | None  # None when the spec does not validate
    status: WorkItemStatus
    now: datetime
    job: JobObservation | None = None  # the Job of status.currentJob, when RUNNING
    spec_error: str | None = None  # why the spec does not validate
    pipeline_error: str | None = None  # why the pipeline is unknown (None = known)
    may_start: bool = True  # a concurrency slot is granted to this item
    duplicate_of: str | None = None  # an older work item of the same (domain, pipeline, partition)
    upstream: str | None = None  # annotation spine.marketspine.io/upstream-execution (chained items)


@dataclass(frozen=True)
class JobRequest:
    attempt: int
    name: str
    execution_id: str


Note = lifecycle.Note


@dataclass
class Plan:
    status: WorkItemStatus  # the status to write (equal to the old one when nothing changed)
    changed: bool = False
    transitions: list[tuple[WorkState | None, WorkState]] = field(default_factory=list)
    create_job: JobRequest | None = None
    delete_job: str | None = None
    # Create, re-run or redirect the next stage's work item (before writing the status).
    chain: lifecycle.ChainNext | None = None
    notes: list[Note] = field(default_factory=list)
    wake_at: datetime | None = None  # reconcile again at this time even if nothing happens
    wants_slot: bool = False  # due to start, but no concurrency slot was granted
    retries_scheduled: int = 0
    finished: list[AttemptRecord] = field(default_factory=list)  # attempts that ended in this plan

    @property
    def state(self) -> WorkState | None:
        return self.status.state


def item_of(
    name: str, spec: WorkItemResourceSpec | None, status: WorkItemStatus, upstream: str | None
) -> lifecycle.Item:
    """The lifecycle's view of a SpineWorkItem. Without a readable spec, the item has no attempts
    left, so a failure ends it FAILED."""
    if spec is None:
        spec_fields = lifecycle.Item(ref=name, pipeline="", max_attempts=max(status.attempts, 1))
    else:
        spec_fields = lifecycle.Item(
            ref=spec.ref,
            pipeline=spec.pipeline,
            params=dict(spec.params),
            chain=spec.chain,
            max_attempts=spec.max_attempts,
            retry=spec.retry,
            desired_at=spec.desired_at,
        )
    return spec_fields.model_copy(
        update=dict(
            state=status.state or WorkState.PENDING,
            attempts=status.attempts,
            total_attempts=status.total_attempts,
            next_attempt_at=status.next_attempt_at,
            last_error=status.last_error,
            reason=status.reason,
            message=status.message,
            current_execution_id=status.current_execution_id,
            latest_execution_id=status.latest_execution_id,
            capture_id=status.capture_id,
            upstream_execution_id=upstream or None,
            started_at=status.started_at,
            completed_at=status.completed_at,
            changed_at=status.state_changed_at,
        )
    )


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= MAX_ERROR_CHARS else "…" + text[-(MAX_ERROR_CHARS - 1) :]


class _Planner:
    def __init__(self, obs: Observation, timing: Timing, rng: random.Random | None) -> None:
        self.obs = obs
        self.timing = timing
        self.rng = rng
        self.now = obs.now
        self.spec = obs.spec
        self.old = obs.status
        self.status = obs.status.model_copy(deep=True)
        self.plan = Plan(status=self.status)
        self.waiting: tuple[str, str] | None = None  # (reason, message) of the Waiting condition
        self.failure: tuple[str, str] | None = None  # (reason, message) of the Failed condition

    # --- helpers ----------------------------------------------------------------------------

    @property
    def state(self) -> WorkState | None:
        return self.status.state

    def item(self) -> lifecycle.Item:
        return item_of(self.obs.name, self.spec, self.status, self.obs.upstream)

    def note(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.notes.append(Note(kind, reason, message))

    def apply(self, decision: Decision) -> lifecycle.Item:
        """Carry a lifecycle decision into the status: its fields, its transitions, the end of an
        attempt in ``status.history``, and its notes as Events."""
        item, status = decision.item, self.status
        status.state = item.state
        if decision.transitions:
            status.state_changed_at = self.now
        status.attempts = item.attempts
        status.total_attempts = item.total_attempts
        status.next_attempt_at = item.next_attempt_at
        status.last_error = _clip(item.last_error)
        status.reason = item.reason
        status.message = _clip(item.message)
        status.current_execution_id = item.current_execution_id
        status.latest_execution_id = item.latest_execution_id
        status.capture_id = item.capture_id
        status.started_at = item.started_at
        status.completed_at = item.completed_at
        self.plan.transitions += decision.transitions
        for end in decision.of(lifecycle.EndAttempt):
            self.end_attempt(AttemptOutcome(end.outcome.value), end.reason, end.message)
        if decision.of(lifecycle.StopAttempt) and status.current_job:
            self.plan.delete_job = status.current_job
        self.plan.notes += decision.notes
        return item

    def item_label(self) -> str:
        if self.spec is None:
            return self.obs.name
        part = self.spec.partition
        return f"{self.spec.pipeline} {part.week.isoformat()} {part.tier.value}"

    # --- the decision -----------------------------------------------------------------------

    def run(self) -> Plan:
        if not self.answer_requests():
            self.advance()
        self.finish()
        return self.plan

    def answer_requests(self) -> bool:
        """Accept a new item, then carry out what a user asked in the spec; True if it is cancelled."""
        if self.state is None:
            self.status.state = lifecycle.INITIAL
            self.status.state_changed_at = self.now
            self.plan.transitions.append((None, lifecycle.INITIAL))
            if self.spec is not None:  # requests made before the item was accepted are part of it
                self.status.observed_retry_request = self.spec.retry_request
                self.status.observed_wake_request = self.spec.wake_request
                self.status.observed_dismiss_request = self.spec.dismiss_request
            self.note("Normal", "Accepted", f"work item accepted: {self.item_label()}")
        self.requests()
        return self.cancel()

    def requests(self) -> None:
        """What a user asked by raising a counter in the spec (``spine work retry|wake|dismiss``):
        each is acted on once; one the lifecycle refuses is reported and dropped."""
        spec, status = self.spec, self.status
        if spec is None:
            return
        if spec.retry_request > status.observed_retry_request:
            status.observed_retry_request = spec.retry_request
            self.request("Retry", lambda item: lifecycle.admin_retry(item, now=self.now))
        if spec.wake_request > status.observed_wake_request:
            status.observed_wake_request = spec.wake_request
            self.request("Wake", lambda item: lifecycle.wake(item, now=self.now, requested=True))
        if spec.dismiss_request > status.observed_dismiss_request:
            status.observed_dismiss_request = spec.dismiss_request
            why = spec.dismiss_reason or "dismissed by spec.dismissRequest"
            self.request("Dismiss", lambda item: lifecycle.dismiss(item, now=self.now, why=why))

    def request(self, what: str, event: Callable[[lifecycle.Item], Decision]) -> None:
        try:
            self.apply(event(self.item()))
        except IllegalTransition as refused:
            self.note("Normal", f"{what}Ignored", str(refused))

    def cancel(self) -> bool:
        if self.spec is None or not self.spec.cancel or self.state is None or not can(self.state, Event.CANCEL):
            return False
        self.apply(lifecycle.cancel(self.item(), now=self.now, message="cancelled by spec.cancel"))
        if self.plan.delete_job:
            self.plan.notes[-1] = Note(
                "Normal", "Cancelled", f"cancelled by spec.cancel; Job {self.plan.delete_job} deleted"
            )
        return True

    def invalid(self) -> tuple[str, str] | None:
        if self.spec is None:
            return INVALID_SPEC, f"invalid spec: {self.obs.spec_error or 'does not validate'}"
        if self.obs.pipeline_error:
            return UNKNOWN_PIPELINE, self.obs.pipeline_error
        if self.obs.duplicate_of and not self.status.total_attempts:
            # Names derive from (domain, pipeline, partition), so this happens only with
            # hand-named objects: running both would run the partition twice.
            return DUPLICATE, f"work item {self.obs.duplicate_of} already covers {self.item_label()}"
        return None

    def advance(self) -> None:
        problem = self.invalid()
        if self.state is WorkState.RETRY_WAIT:
            item = self.item()
            if problem is None and not lifecycle.is_due(item, self.now):
                due = self.status.next_attempt_at
                assert due is not None
                self.waiting = ("Backoff", f"attempt {self.status.attempts + 1} is due at {due.isoformat()}")
                self.plan.wake_at = due
                return
            woken = lifecycle.wake(item, now=self.now, requested=problem is not None)
            self.apply(woken if problem is None else replace(woken, effects=()))
        if self.state is WorkState.RUNNING:
            self.running()
        if self.state is WorkState.PENDING:  # (also right after a success the chain made stale)
            self.pending(problem)

    def pending(self, problem: tuple[str, str] | None) -> None:
        spec = self.spec
        if problem is not None or spec is None:
            reason, message = problem or (INVALID_SPEC, "invalid spec")
            # Retrying cannot help: the object itself is wrong.
            context = f"{message}; no attempt was made; delete this work item (and enqueue a corrected one)"
            decision = lifecycle.invalid(self.item(), now=self.now, reason=reason, message=message)
            self.apply(replace(decision, effects=(Note("Warning", reason, context),)))
            self.failure = (reason, message)
            return
        if spec.desired_at is not None and spec.desired_at > self.now:
            self.waiting = ("NotYetDue", f"spec.desiredAt is {spec.desired_at.isoformat()}")
            self.plan.wake_at = spec.desired_at
            return
        if not self.obs.may_start:
            self.waiting = ("ConcurrencyLimit", "waiting for a free slot (global or per-pipeline limit)")
            self.plan.wants_slot = True
            return
        self.start()

    def start(self) -> None:
        attempt = self.status.total_attempts + 1
        decision = lifecycle.claim(self.item(), now=self.now, execution=execution_id(self.obs.uid, attempt))
        started = decision.first(lifecycle.StartAttempt)
        assert started is not None
        request = JobRequest(started.attempt, job_name(self.obs.name, started.attempt), started.execution_id)
        self.apply(replace(decision, effects=()))
        self.status.current_job = request.name
        self.status.history.append(
            AttemptRecord(
                attempt=request.attempt,
                execution_id=request.execution_id,
                job=request.name,
                started_at=self.now,
                upstream_execution=self.obs.upstream or "",
            )
        )
        del self.status.history[:-MAX_HISTORY]
        self.plan.create_job = request
        self.plan.wake_at = self.now + self.timing.start_timeout
        budget = lifecycle.budget(decision.item)
        self.note(
            "Normal", "Started", f"attempt {budget} started: Job {request.name} (execution {request.execution_id})"
        )

    def running(self) -> None:
        # A running attempt is followed to its end even if the item became invalid meanwhile.
        job = self.obs.job
        status = self.status
        name = status.current_job or "?"
        if job is None:  # not observed yet: the caller looks it up before planning
            return
        if not job.exists:
            self.lost(JOB_DELETED, f"Job {name} was deleted before it finished", stop=False)
        elif job.succeeded:
            self.succeeded(job)
        elif job.failed:
            self.job_failed(job)
        else:
            started_at = status.started_at or self.now
            start_by = started_at + self.timing.start_timeout
            stuck_by = start_by + self.timing.deadline(self.spec) + self.timing.stuck_grace
            if not job.started and self.now >= start_by:
                seconds = seconds_text(self.timing.start_timeout)
                self.lost(POD_START_TIMEOUT, f"no pod of Job {name} started within {seconds}", stop=True)
            elif job.started and self.now >= stuck_by:
                deadline = seconds_text(self.timing.deadline(self.spec))
                message = f"Job {name} ran past its activeDeadlineSeconds ({deadline}) and was not ended; deleted"
                self.attempt_failed(DEADLINE_EXCEEDED, message, retryable=True, stop=True)
            else:
                self.plan.wake_at = stuck_by if job.started else start_by

    def current_record(self) -> AttemptRecord | None:
        attempt = self.status.total_attempts
        return next((r for r in reversed(self.status.history) if r.attempt == attempt), None)

    def succeeded(self, job: JobObservation) -> None:
        record = self.current_record()
        item = self.item()
        # What the attempt read: recorded when it started ("" = no upstream); unknown for an
        # attempt started by an operator that did not record it, which is taken as current.
        read = record.upstream_execution if record is not None else None
        read_upstream = item.upstream_execution_id if read is None else (read or None)
        decision = lifecycle.succeeded(
            item,
            now=self.now,
            execution=self.status.current_execution_id or "",
            capture_id=job.capture_id,
            read_upstream=read_upstream,
        )
        self.apply(decision)
        self.plan.chain = decision.first(lifecycle.ChainNext)

    def job_failed(self, job: JobObservation) -> None:
        detail = job.termination_message or job.message or "the pipeline container failed"
        if job.reason == JOB_REJECTED:  # the API server refused the Job: another try would be refused too
            self.attempt_failed(JOB_REJECTED, f"the Job was refused by the API server: {detail}", retryable=False)
            return
        if job.reason == DEADLINE_EXCEEDED:
            deadline = seconds_text(self.timing.deadline(self.spec))
            message = f"attempt exceeded activeDeadlineSeconds ({deadline}) and was stopped"
            if job.termination_message:
                message += f": {job.termination_message}"
            self.attempt_failed(DEADLINE_EXCEEDED, message, retryable=True)
            return
        code = f"exit code {job.exit_code}: " if job.exit_code is not None else ""
        self.attempt_failed(JOB_FAILED, f"{code}{detail}", retryable=job.retryable)

    def lost(self, reason: str, message: str, *, stop: bool) -> None:
        """The attempt's Job is gone or never ran: ``lifecycle.lost``, retried like any failure
        (unless the item itself became invalid meanwhile, when no attempt could succeed)."""
        if self.spec is None or self.invalid() is not None:
            self.attempt_failed(reason, message, retryable=False, stop=stop)
            return
        message = _clip(message) or reason
        self.failed(lifecycle.lost(self.item(), now=self.now, reason=reason, message=message, stop=stop, rng=self.rng))

    def attempt_failed(self, reason: str, message: str, *, retryable: bool, stop: bool = False) -> None:
        message = _clip(message) or reason
        if self.spec is None:
            retryable = False
        decision = lifecycle.failed(
            self.item(),
            now=self.now,
            execution=self.status.current_execution_id,
            reason=reason,
            message=message,
            retryable=retryable and self.invalid() is None,
            stop=stop,
            rng=self.rng,
        )
        if self.spec is None:  # no `spine work retry` can name it: it has to be replaced
            context = f"attempt {self.status.attempts} failed; the spec no longer validates ({reason}): {message}"
            tell = Note("Warning", "Failed", f"{context}; fix the spec, then delete the work item and enqueue it again")
            decision = replace(decision, effects=(*(e for e in decision.effects if not isinstance(e, Note)), tell))
        self.failed(decision)

    def failed(self, decision: Decision) -> None:
        """Carry out a failed (or lost) attempt's decision, and what waits on it: the wake-up, the
        Waiting or Failed condition."""
        item = self.apply(decision)
        if item.state is WorkState.RETRY_WAIT:
            assert item.next_attempt_at is not None
            self.plan.retries_scheduled += 1
            self.plan.wake_at = item.next_attempt_at
            self.waiting = ("Backoff", f"attempt {item.attempts + 1} is due at {item.next_attempt_at.isoformat()}")
        else:
            self.failure = (item.reason or "Failed", item.message or "")

    def end_attempt(self, outcome: AttemptOutcome, reason: str | None, error: str | None) -> AttemptRecord | None:
        record = self.current_record()
        if record is None or record.outcome is not AttemptOutcome.RUNNING:
            return record
        record.finished_at = self.now
        record.outcome = outcome
        record.reason = reason
        record.error = _clip(error)
        self.plan.finished.append(record)
        return record

    # --- conditions and bookkeeping ---------------------------------------------------------

    def finish(self) -> None:
        status = self.status
        status.observed_generation = self.obs.generation
        state = status.state or WorkState.PENDING
        failure = self.failure or self._old_failure()
        budget = f"{status.attempts}/{self.spec.max_attempts if self.spec else '?'}"
        running_msg = f"attempt {budget}: Job {status.current_job}" if state is WorkState.RUNNING else ""
        stopped = (status.reason or lifecycle.CANCELLED, status.message or "cancelled")
        ready = {
            WorkState.COMPLETE: (ConditionStatus.TRUE, "Complete", "the work item completed"),
            WorkState.RUNNING: (ConditionStatus.FALSE, "Running", running_msg),
            WorkState.PENDING: (ConditionStatus.FALSE, "Pending", "waiting to start"),
            WorkState.RETRY_WAIT: (ConditionStatus.FALSE, "RetryWait", status.last_error or ""),
            WorkState.FAILED: (ConditionStatus.FALSE, "Failed", status.last_error or ""),
            WorkState.CANCELLED: (ConditionStatus.FALSE, *stopped),
        }[state]
        self.set(ConditionType.READY, *ready)
        if state is WorkState.RUNNING:
            self.set(ConditionType.RUNNING, ConditionStatus.TRUE, "JobRunning", running_msg)
        else:
            self.set(ConditionType.RUNNING, ConditionStatus.FALSE, "NotRunning", "")
        waiting = self.waiting or self._old_waiting(state)
        if waiting is not None and state in (WorkState.PENDING, WorkState.RETRY_WAIT):
            self.set(ConditionType.WAITING, ConditionStatus.TRUE, *waiting)
        elif state is WorkState.PENDING:
            self.set(ConditionType.WAITING, ConditionStatus.TRUE, "Queued", "due to start")
        else:
            self.set(ConditionType.WAITING, ConditionStatus.FALSE, "NotWaiting", "")
        if state is WorkState.FAILED and failure is not None:
            self.set(ConditionType.FAILED, ConditionStatus.TRUE, *failure)
        else:
            self.set(ConditionType.FAILED, ConditionStatus.FALSE, "NotFailed", "")
        self.plan.changed = self.status != self.old

    def _old_failure(self) -> tuple[str, str] | None:
        old = self.old.condition(ConditionType.FAILED)
        if old is not None and old.status is ConditionStatus.TRUE:
            return old.reason, old.message
        return None

    def _old_waiting(self, state: WorkState) -> tuple[str, str] | None:
        # Keep the previous reason when this pass did not look (e.g. a RETRY_WAIT item's wait).
        old = self.old.condition(ConditionType.WAITING)
        if old is not None and old.status is ConditionStatus.TRUE and self.old.state is state:
            return old.reason, old.message
        return None

    def set(self, kind: ConditionType, value: ConditionStatus, reason: str, message: str) -> None:
        conditions = self.status.conditions
        old = next((c for c in conditions if c.type is kind), None)
        since = old.last_transition_time if old is not None and old.status is value else self.now
        new = Condition(
            type=kind,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=since,
            observed_generation=self.obs.generation,
        )
        if old is None:
            conditions.append(new)
        else:
            conditions[conditions.index(old)] = new


def requested(obs: Observation, timing: Timing) -> WorkItemStatus:
    """The status once the user's requests in the spec (retry, wake, dismiss, cancel) are carried
    out, and nothing else (no attempt started, no backoff elapsed): what ``spine work`` reports on
    the kubernetes backend before the operator has written it."""
    planner = _Planner(obs, timing, None)
    planner.answer_requests()
    return planner.status


def plan(obs: Observation, timing: Timing, rng: random.Random | None = None) -> Plan:
    """Decide what to do for one work item. See the module docstring."""
    if obs.now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return _Planner(obs, timing, rng).run()
