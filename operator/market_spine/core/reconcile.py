"""Scheduling decisions for one SpineWorkItem: from what the operator observes to what it does next.

Pure (standard library and pydantic only), so every decision of the operator is a plain function
call that tests can make with any clock. Called by ``market_spine.operator.reconciler`` for each
work item it reconciles; the reconciler gathers an :class:`Observation` (the item, the Job of its
current attempt, the clock, whether a concurrency slot is free), calls :func:`plan`, and carries
out the resulting :class:`Plan` (create or delete a Job, write the status, post events, mirror the
change into PostgreSQL). Every state change goes through ``core.states.transition`` and every
retry decision through ``core.backoff.decide_after_failure``, exactly like the local worker.

The planner is level-triggered: given the same observation twice it returns the same plan, and
once a plan has been carried out, planning again from the new status changes nothing. That is what
makes duplicate watch events, restarts and two operator replicas harmless.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from market_spine.core.backoff import decide_after_failure
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
from market_spine.core.states import Event, WorkState, is_terminal, transition

# Failure reasons (CamelCase, used in events, the Failed condition and status.history).
JOB_FAILED = "JobFailed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
JOB_DELETED = "JobDeleted"
POD_START_TIMEOUT = "PodStartTimeout"
JOB_REJECTED = "JobRejected"
INVALID_SPEC = "InvalidSpec"
UNKNOWN_PIPELINE = "UnknownPipeline"
DUPLICATE = "DuplicateWorkItem"

_EXECUTION_NAMESPACE = uuid.UUID("5b1e0000-0000-4000-8000-6d61726b6574")  # "market" spine ids


def execution_id(uid: str, attempt: int) -> str:
    """The execution id of attempt ``attempt`` of the work item with this uid.

    Deterministic, so a restarted operator passes the same ``--execution-id`` to the same Job;
    derived from the uid (not the name), so a work item deleted and enqueued again never reuses
    the execution ids of its predecessor.
    """
    return uuid.uuid5(_EXECUTION_NAMESPACE, f"{uid}/{attempt}").hex


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


@dataclass(frozen=True)
class JobRequest:
    attempt: int
    name: str
    execution_id: str


@dataclass(frozen=True)
class Note:
    """A Kubernetes Event to post on the work item."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    status: WorkItemStatus  # the status to write (equal to the old one when nothing changed)
    changed: bool = False
    transitions: list[tuple[WorkState | None, WorkState]] = field(default_factory=list)
    create_job: JobRequest | None = None
    delete_job: str | None = None
    chain: bool = False  # create or re-run the next stage's work item (before writing the status)
    notes: list[Note] = field(default_factory=list)
    wake_at: datetime | None = None  # reconcile again at this time even if nothing happens
    wants_slot: bool = False  # due to start, but no concurrency slot was granted
    retries_scheduled: int = 0
    finished: list[AttemptRecord] = field(default_factory=list)  # attempts that ended in this plan

    @property
    def state(self) -> WorkState | None:
        return self.status.state


def wants_to_start(obs: Observation) -> bool:
    """Would this item start an attempt now if a slot were free? (Asked before granting a slot.)"""
    spec, status = obs.spec, obs.status
    if spec is None or obs.pipeline_error or spec.cancel or (obs.duplicate_of and not status.total_attempts):
        return False  # (a retry requested together with a cancel ends CANCELLED, without a Job)
    state = status.state or WorkState.PENDING
    if spec.retry_request > status.observed_retry_request and state in (WorkState.FAILED, WorkState.COMPLETE):
        state = WorkState.PENDING
    if state is WorkState.RETRY_WAIT:
        if status.next_attempt_at is not None and status.next_attempt_at > obs.now:
            return False
    elif state is not WorkState.PENDING:
        return False
    return spec.desired_at is None or spec.desired_at <= obs.now


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= MAX_ERROR_CHARS else "…" + text[-(MAX_ERROR_CHARS - 1) :]


def _seconds(delta: timedelta) -> str:
    value = delta.total_seconds()
    return f"{value:.0f}s" if value == int(value) else f"{value:.1f}s"


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

    def note(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.notes.append(Note(kind, reason, message))

    def move(self, event: Event | None, new_state: WorkState | None = None) -> WorkState:
        before = self.state
        after = new_state if event is None else transition(before or WorkState.PENDING, event)
        assert after is not None
        self.status.state = after
        self.status.state_changed_at = self.now
        self.plan.transitions.append((before, after))
        return after

    def budget(self) -> str:
        total = self.spec.max_attempts if self.spec else "?"
        return f"{self.status.attempts}/{total}"

    def item_label(self) -> str:
        if self.spec is None:
            return self.obs.name
        part = self.spec.partition
        return f"{self.spec.pipeline} {part.week.isoformat()} {part.tier.value}"

    def retry_hint(self) -> str:
        if self.spec is None:
            return "fix the spec, then delete the work item and enqueue it again"
        part = self.spec.partition
        return (
            f"`spine work retry {self.spec.pipeline} --week {part.week.isoformat()} "
            f"--tier {part.tier.value}` re-opens it"
        )

    # --- the decision -----------------------------------------------------------------------

    def run(self) -> Plan:
        if self.state is None:
            self.move(None, WorkState.PENDING)
            self.status.observed_retry_request = self.spec.retry_request if self.spec else 0
            self.note("Normal", "Accepted", f"work item accepted: {self.item_label()}")
        self.admin_retry()
        if not self.cancel():
            self.advance()
        self.finish()
        return self.plan

    def admin_retry(self) -> None:
        spec = self.spec
        if spec is None or spec.retry_request <= self.status.observed_retry_request:
            return
        self.status.observed_retry_request = spec.retry_request
        state = self.state
        if state in (WorkState.FAILED, WorkState.COMPLETE):
            self.move(Event.ADMIN_RETRY)
            self.status.attempts = 0
            self.status.next_attempt_at = None
            self.status.completed_at = None
            self.status.current_execution_id = None
            self.note(
                "Normal",
                "RetryRequested",
                f"admin retry: {state.value} → PENDING with a fresh budget of {spec.max_attempts} attempts",
            )
        elif state is WorkState.CANCELLED:
            self.note("Warning", "RetryRefused", "a CANCELLED work item cannot be retried; delete it and enqueue again")
        else:
            self.note("Normal", "RetryIgnored", f"the work item is {state.value if state else 'new'}; nothing to retry")

    def cancel(self) -> bool:
        if self.spec is None or not self.spec.cancel or self.state is None or is_terminal(self.state):
            return False
        if self.state is WorkState.RUNNING and self.status.current_job:
            self.plan.delete_job = self.status.current_job
            self.end_attempt(AttemptOutcome.CANCELLED, "Cancelled", "cancelled by spec.cancel")
        self.move(Event.CANCEL)
        self.status.completed_at = self.now
        self.status.next_attempt_at = None
        self.status.current_execution_id = None
        job = f"; Job {self.plan.delete_job} deleted" if self.plan.delete_job else ""
        self.note("Normal", "Cancelled", f"cancelled by spec.cancel{job}")
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
            due = self.status.next_attempt_at
            if problem is None and due is not None and due > self.now:
                self.waiting = ("Backoff", f"attempt {self.status.attempts + 1} is due at {due.isoformat()}")
                self.plan.wake_at = due
                return
            self.move(Event.WAKE)
            self.status.next_attempt_at = None
            if problem is None:
                self.note("Normal", "BackoffElapsed", f"backoff elapsed; attempt {self.status.attempts + 1} is due")
        if self.state is WorkState.PENDING:
            self.pending(problem)
        elif self.state is WorkState.RUNNING:
            self.running(problem)

    def pending(self, problem: tuple[str, str] | None) -> None:
        spec = self.spec
        if problem is not None or spec is None:
            reason, message = problem or (INVALID_SPEC, "invalid spec")
            self.status.last_error = _clip(message)
            self.fail(reason, message, "no attempt was made")
            return
        if spec.desired_at is not None and spec.desired_at > self.now:
            self.waiting = ("NotYetDue", f"spec.desiredAt is {spec.desired_at.isoformat()}")
            self.plan.wake_at = spec.desired_at
            return
        if not self.obs.may_start:
            self.waiting = ("ConcurrencyLimit", "waiting for a free slot (global or per-pipeline limit)")
            self.plan.wants_slot = True
            return
        self.start(spec)

    def start(self, spec: WorkItemResourceSpec) -> None:
        status = self.status
        attempt = status.total_attempts + 1
        request = JobRequest(attempt, job_name(self.obs.name, attempt), execution_id(self.obs.uid, attempt))
        self.move(Event.START)
        status.attempts += 1
        status.total_attempts = attempt
        status.current_job = request.name
        status.current_execution_id = request.execution_id
        status.latest_execution_id = request.execution_id
        status.started_at = self.now
        status.next_attempt_at = None
        status.capture_id = None
        status.history.append(
            AttemptRecord(attempt=attempt, execution_id=request.execution_id, job=request.name, started_at=self.now)
        )
        del status.history[:-MAX_HISTORY]
        self.plan.create_job = request
        self.plan.wake_at = self.now + self.timing.start_timeout
        self.note(
            "Normal",
            "Started",
            f"attempt {self.budget()} started: Job {request.name} (execution {request.execution_id})",
        )

    def running(self, problem: tuple[str, str] | None) -> None:
        job = self.obs.job
        status = self.status
        name = status.current_job or "?"
        if job is None:  # not observed yet: the caller looks it up before planning
            return
        if not job.exists:
            self.attempt_failed(JOB_DELETED, f"Job {name} was deleted before it finished", True)
        elif job.succeeded:
            self.succeeded(job)
        elif job.failed:
            self.job_failed(job)
        else:
            started_at = status.started_at or self.now
            start_by = started_at + self.timing.start_timeout
            stuck_by = start_by + self.timing.deadline(self.spec) + self.timing.stuck_grace
            if not job.started and self.now >= start_by:
                self.plan.delete_job = name
                seconds = _seconds(self.timing.start_timeout)
                self.attempt_failed(POD_START_TIMEOUT, f"no pod of Job {name} started within {seconds}", True)
            elif job.started and self.now >= stuck_by:
                self.plan.delete_job = name
                deadline = _seconds(self.timing.deadline(self.spec))
                message = f"Job {name} ran past its activeDeadlineSeconds ({deadline}) and was not ended; deleted"
                self.attempt_failed(DEADLINE_EXCEEDED, message, True)
            else:
                self.plan.wake_at = stuck_by if job.started else start_by
        del problem  # a running attempt is followed to its end even if the item became invalid

    def succeeded(self, job: JobObservation) -> None:
        status = self.status
        record = self.end_attempt(AttemptOutcome.SUCCEEDED, None, None)
        self.move(Event.SUCCEED)
        status.completed_at = self.now
        status.current_execution_id = None
        status.capture_id = job.capture_id
        took = f" in {_seconds(self.now - record.started_at)}" if record else ""
        capture = f"; capture {job.capture_id}" if job.capture_id else ""
        self.note("Normal", "Completed", f"attempt {self.budget()} succeeded{took}{capture}")
        self.plan.chain = bool(self.spec and self.spec.chain)

    def job_failed(self, job: JobObservation) -> None:
        detail = job.termination_message or job.message or "the pipeline container failed"
        if job.reason == JOB_REJECTED:  # the API server refused the Job: another try would be refused too
            self.attempt_failed(JOB_REJECTED, f"the Job was refused by the API server: {detail}", False)
            return
        if job.reason == DEADLINE_EXCEEDED:
            deadline = _seconds(self.timing.deadline(self.spec))
            message = f"attempt exceeded activeDeadlineSeconds ({deadline}) and was stopped"
            if job.termination_message:
                message += f": {job.termination_message}"
            self.attempt_failed(DEADLINE_EXCEEDED, message, True)
            return
        code = f"exit code {job.exit_code}: " if job.exit_code is not None else ""
        self.attempt_failed(JOB_FAILED, f"{code}{detail}", job.retryable)

    def attempt_failed(self, reason: str, message: str, retryable: bool) -> None:
        status = self.status
        message = _clip(message) or reason
        self.end_attempt(AttemptOutcome.FAILED, reason, message)
        status.last_error = message
        status.current_execution_id = None
        spec = self.spec
        if spec is None:
            self.fail(reason, message, f"attempt {status.attempts} failed; the spec no longer validates")
            return
        decision = decide_after_failure(
            attempts=status.attempts,
            max_attempts=spec.max_attempts,
            policy=spec.retry,
            now=self.now,
            retryable=retryable and self.invalid() is None,
            rng=self.rng,
        )
        if decision.event is Event.FAIL_RETRYABLE:
            assert decision.next_attempt_at is not None and decision.delay is not None
            self.move(Event.FAIL_RETRYABLE)
            status.next_attempt_at = decision.next_attempt_at
            self.plan.retries_scheduled += 1
            self.plan.wake_at = decision.next_attempt_at
            self.waiting = (
                "Backoff",
                f"attempt {status.attempts + 1} is due at {decision.next_attempt_at.isoformat()}",
            )
            self.note(
                "Warning",
                "AttemptFailed",
                f"attempt {self.budget()} failed ({reason}): {message}; next attempt at "
                f"{decision.next_attempt_at.isoformat()} (in {_seconds(decision.delay)})",
            )
            return
        why = "not retryable" if not retryable else "no attempts left"
        self.fail(reason, message, f"attempt {self.budget()} failed; {why}")

    def fail(self, reason: str, message: str, context: str) -> None:
        self.move(Event.FAIL_FINAL)
        self.status.completed_at = self.now
        self.status.next_attempt_at = None
        self.status.current_execution_id = None
        self.failure = (reason, message)
        if reason in (UNKNOWN_PIPELINE, INVALID_SPEC, DUPLICATE):
            # Retrying cannot help: the object itself is wrong.
            self.note("Warning", reason, f"{message}; {context}; delete this work item (and enqueue a corrected one)")
        else:
            self.note("Warning", "Failed", f"{context} ({reason}): {message}; {self.retry_hint()}")

    def end_attempt(self, outcome: AttemptOutcome, reason: str | None, error: str | None) -> AttemptRecord | None:
        attempt = self.status.total_attempts
        record = next((r for r in reversed(self.status.history) if r.attempt == attempt), None)
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
        running_msg = f"attempt {self.budget()}: Job {status.current_job}" if state is WorkState.RUNNING else ""
        ready = {
            WorkState.COMPLETE: (ConditionStatus.TRUE, "Complete", "the work item completed"),
            WorkState.RUNNING: (ConditionStatus.FALSE, "Running", running_msg),
            WorkState.PENDING: (ConditionStatus.FALSE, "Pending", "waiting to start"),
            WorkState.RETRY_WAIT: (ConditionStatus.FALSE, "RetryWait", status.last_error or ""),
            WorkState.FAILED: (ConditionStatus.FALSE, "Failed", status.last_error or ""),
            WorkState.CANCELLED: (ConditionStatus.FALSE, "Cancelled", "cancelled by spec.cancel"),
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


def plan(obs: Observation, timing: Timing, rng: random.Random | None = None) -> Plan:
    """Decide what to do for one work item. See the module docstring."""
    if obs.now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return _Planner(obs, timing, rng).run()
