"""The work-item lifecycle: what every event does to a work item, on either backend.

Pure (standard library and pydantic). The operator's planner (``core.reconcile``) and the local
queue and worker (``services.queue``, ``services.worker``) read a work item, turn it into an
:class:`Item`, call one function here per event, and carry out the :class:`Decision` it returns:
they write ``decision.item`` conditionally on what they read (``resourceVersion`` on Kubernetes, the
``version`` column in PostgreSQL), then the effects (start or stop an attempt, record how an
attempt ended, chain the next stage, tell the user). No other module decides a state: the rule
for "cancel while running" is :func:`cancel`, the rule for a restatement reaching a stage that
already ran is :func:`chain`.

Events: :func:`claim`, :func:`succeeded`, :func:`failed`, :func:`lost`, :func:`released`,
:func:`cancel`, :func:`admin_retry`, :func:`wake`, :func:`dismiss`, :func:`invalid` and
:func:`chain`. The transition table is ``core.states``; how long to wait after a failure is
``core.backoff.decide_after_failure``. A refused event raises ``IllegalTransition`` with a message
in the user's words and, where there is one, the command that does what they probably meant.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from market_spine.core.backoff import DEFAULT_MAX_ATTEMPTS, RetryPolicy, decide_after_failure
from market_spine.core.stages import next_pipeline
from market_spine.core.states import VERBS, Event, IllegalTransition, WorkState, can, is_terminal, transition

# Reasons (CamelCase: Kubernetes Events, conditions, status.reason, core_work_items.state_reason).
DEADLINE_EXCEEDED = "DeadlineExceeded"  # the attempt ran past its per-attempt deadline
WORKER_LOST = "WorkerLost"  # the local worker holding the attempt stopped renewing its lease
CANCELLED = "Cancelled"
DISMISSED = "Dismissed"
RELEASED = "Released"
UPSTREAM_CHANGED = "UpstreamChanged"  # the stage it reads ran again while this one ran

# A new work item starts here (a row's column default; a SpineWorkItem's first status).
INITIAL = WorkState.PENDING

# Source options a downstream stage must not inherit: it reads the capture its upstream wrote.
SOURCE_PARAMS = frozenset({"file", "source", "url", "capture_date", "capture_id"})

_EXECUTION_NAMESPACE = uuid.UUID("5b1e0000-0000-4000-8000-6d61726b6574")  # "market" spine ids


class Outcome(enum.StrEnum):
    """How an attempt ended (``core_executions.outcome``, ``status.history[].outcome``)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RELEASED = "RELEASED"  # given back unfinished by a worker that was stopping (local backend only)


class Item(BaseModel):
    """A work item as the lifecycle sees it: the same fields whichever backend stores it."""

    model_config = ConfigDict(frozen=True)

    ref: str = Field(description="How `spine work` names it: `<pipeline> --week <Monday> --tier <tier>`.")
    pipeline: str
    params: dict[str, str] = Field(default_factory=dict)
    chain: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    desired_at: datetime | None = None
    state: WorkState = INITIAL
    attempts: int = 0  # in the current budget (an admin retry resets it)
    total_attempts: int = 0  # ever started: numbers the attempts, never goes down
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    reason: str | None = None  # why it is in its state: a failure reason, Cancelled, Dismissed…
    message: str | None = None  # the same in words
    current_execution_id: str | None = None
    latest_execution_id: str | None = None
    capture_id: str | None = None
    upstream_execution_id: str | None = None  # the upstream run whose output it reads (chained items)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    changed_at: datetime | None = None


# --- effects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartAttempt:
    """Launch attempt ``attempt`` (numbered over the item's whole life) as ``execution_id``."""

    attempt: int
    execution_id: str


@dataclass(frozen=True)
class StopAttempt:
    """Stop the attempt: the operator deletes its Job; a local worker sees its lease taken away and
    abandons it (its late result is fenced out: nothing it writes is kept)."""

    execution_id: str


@dataclass(frozen=True)
class EndAttempt:
    """Record how the attempt ended (``core_executions``, ``status.history``)."""

    execution_id: str
    outcome: Outcome
    reason: str | None = None
    message: str | None = None
    capture_id: str | None = None


@dataclass(frozen=True)
class ChainNext:
    """Create, re-run or redirect the next stage's item for the same partition (see :func:`chain`)."""

    pipeline: str
    params: Mapping[str, str]
    upstream_execution_id: str


@dataclass(frozen=True)
class Note:
    """Something to tell the user: a Kubernetes Event, a line of worker output."""

    type: Literal["Normal", "Warning"]  # as a Kubernetes Event's type
    reason: str
    message: str


Effect = StartAttempt | StopAttempt | EndAttempt | ChainNext | Note
E = TypeVar("E", StartAttempt, StopAttempt, EndAttempt, ChainNext, Note)


@dataclass(frozen=True)
class Decision:
    """The new item and what to carry out. ``transitions`` lists each state change, in order."""

    item: Item
    transitions: tuple[tuple[WorkState, WorkState], ...] = ()
    effects: tuple[Effect, ...] = ()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.effects if isinstance(e, kind)]

    def first(self, kind: type[E]) -> E | None:
        found = self.of(kind)
        return found[0] if found else None

    @property
    def notes(self) -> list[Note]:
        return self.of(Note)

    def then(self, other: Decision) -> Decision:
        """This decision followed by ``other`` (made from this one's item)."""
        return Decision(other.item, self.transitions + other.transitions, self.effects + other.effects)


# --- helpers ------------------------------------------------------------------------------


def execution_id(uid: str, attempt: int) -> str:
    """The execution id of attempt ``attempt`` of the work item whose identity is ``uid``.

    Deterministic, so a restarted operator passes the same ``--execution-id`` to the same Job;
    derived from an identity that is never reused (a Kubernetes uid, or a row id with its creation
    time), so a work item deleted and enqueued again never reuses its predecessor's ids."""
    return uuid.uuid5(_EXECUTION_NAMESPACE, f"{uid}/{attempt}").hex


def downstream_params(params: Mapping[str, str], capture_id: str | None) -> dict[str, str]:
    """Parameters for the next stage: read exactly the capture this stage wrote, never a source (nor
    the capture day, which only names a new capture)."""
    kept = {k: v for k, v in params.items() if k not in SOURCE_PARAMS}
    return kept | {"capture_id": capture_id} if capture_id else kept


def queue_order(priority: int, desired: str, created: str, name: str) -> tuple[int, str, str, str]:
    """The sort key of the queue, most urgent first: higher priority, then the earlier ``desiredAt``
    (ISO text; the creation time when unset), then the older item, then the name. The local queue
    orders its SQL the same way (``db.workitems.QUEUE_ORDER``)."""
    return (-priority, desired, created, name)


# The events a person asks for (the verbs of `spine work` and `kubectl spine`), in the order a hint
# lists them.
REQUESTS = (Event.ADMIN_RETRY, Event.WAKE, Event.DISMISS, Event.CANCEL)


def requested(event: Event, why: str = "") -> Callable[[Item, datetime], Decision]:
    """What a person's request (``spine work retry|wake|dismiss|cancel``, or the spec fields that
    ``kubectl spine`` sets) does to an item: the decision both backends' queues check and carry out."""

    def decide(item: Item, now: datetime) -> Decision:
        match event:
            case Event.ADMIN_RETRY:
                return admin_retry(item, now=now)
            case Event.WAKE:
                return wake(item, now=now, requested=True)
            case Event.DISMISS:
                return dismiss(item, now=now, why=why)
            case Event.CANCEL:
                return cancel(item, now=now)
        raise ValueError(f"{event} is not a request a person makes")

    return decide


def requests_allowed(state: WorkState) -> list[str]:
    """The verbs (``retry``, ``wake``, ``dismiss``, ``cancel``) the transition table allows on an
    item in ``state``: what ``describe`` offers, from the one table that decides them."""
    return [VERBS[event] for event in REQUESTS if can(state, event)]


def seconds_text(delta: timedelta) -> str:
    value = delta.total_seconds()
    return f"{value:.0f}s" if value == int(value) else f"{value:.1f}s"


def budget(item: Item) -> str:
    return f"{item.attempts}/{item.max_attempts}"


def command(verb: str, item: Item) -> str:
    return f"`spine work {verb} {item.ref}`"


def is_due(item: Item, now: datetime) -> bool:
    """Would the item start an attempt now, given a free worker or slot?"""
    if item.state is WorkState.RETRY_WAIT:
        return item.next_attempt_at is None or item.next_attempt_at <= now
    return item.state is WorkState.PENDING and (item.desired_at is None or item.desired_at <= now)


def _move(
    item: Item, event: Event, now: datetime, **changes: object
) -> tuple[Item, tuple[tuple[WorkState, WorkState], ...]]:
    after = transition(item.state, event)
    return item.model_copy(update={"state": after, "changed_at": now, **changes}), ((item.state, after),)


def _refuse(item: Item, event: Event, message: str) -> IllegalTransition:
    return IllegalTransition(item.state, event, message)


def _check_attempt(item: Item, execution: str | None, event: Event) -> str:
    """The execution must be the item's running attempt: a late report of an attempt that was
    cancelled, lost or superseded must never overwrite the newer decision."""
    if item.state is not WorkState.RUNNING or execution is None or execution != item.current_execution_id:
        now_doing = (
            f"its attempt is now execution {item.current_execution_id}"
            if item.state is WorkState.RUNNING
            else f"it is {item.state.value} now"
        )
        raise _refuse(
            item,
            event,
            f"attempt {execution} of {item.ref} no longer counts: {now_doing}; nothing it reports is kept",
        )
    return execution


# --- events -------------------------------------------------------------------------------


def claim(item: Item, *, now: datetime, execution: str) -> Decision:
    """An attempt starts (a worker claimed the item, or the operator creates its Job)."""
    if item.state is not WorkState.PENDING:
        raise _refuse(item, Event.START, f"can't start {item.ref}: it is {item.state.value}, not PENDING")
    attempt = item.total_attempts + 1
    new, moved = _move(
        item,
        Event.START,
        now,
        attempts=item.attempts + 1,
        total_attempts=attempt,
        current_execution_id=execution,
        latest_execution_id=execution,
        started_at=now,
        next_attempt_at=None,
        capture_id=None,
        reason=None,
        message=None,
    )
    note = Note("Normal", "Started", f"attempt {budget(new)} started (execution {execution})")
    return Decision(new, moved, (StartAttempt(attempt, execution), note))


def succeeded(
    item: Item, *, now: datetime, execution: str, capture_id: str | None, read_upstream: str | None = None
) -> Decision:
    """The attempt finished well. ``read_upstream`` is the upstream run the attempt read (the item's
    ``upstream_execution_id`` when it started): if the chain pointed the item at a newer one while
    it ran (:func:`chain` deferring), the result is already stale and the item runs again, on the
    newer input, with a fresh budget; it does not chain a stale result onwards."""
    _check_attempt(item, execution, Event.SUCCEED)
    new, moved = _move(
        item,
        Event.SUCCEED,
        now,
        completed_at=now,
        current_execution_id=None,
        capture_id=capture_id,
        next_attempt_at=None,
        last_error=None,
        reason=None,
        message=None,
    )
    took = f" in {seconds_text(now - item.started_at)}" if item.started_at else ""
    capture = f"; capture {capture_id}" if capture_id else ""
    done = Decision(
        new,
        moved,
        (
            EndAttempt(execution, Outcome.SUCCEEDED, capture_id=capture_id),
            Note("Normal", "Completed", f"attempt {budget(new)} succeeded{took}{capture}"),
        ),
    )
    if read_upstream != item.upstream_execution_id:
        why = f"its input changed while it ran (upstream run {item.upstream_execution_id})"
        return done.then(_reopen(new, now, UPSTREAM_CHANGED, f"{why}: running it again on the new input"))
    following = next_pipeline(item.pipeline) if item.chain else None
    if following is not None:
        done = done.then(
            Decision(new, (), (ChainNext(following, downstream_params(item.params, capture_id), execution),))
        )
    return done


def failed(
    item: Item,
    *,
    now: datetime,
    execution: str | None,
    reason: str,
    message: str,
    retryable: bool = True,
    stop: bool = False,
    rng: random.Random | None = None,
) -> Decision:
    """The attempt failed: RETRY_WAIT with the backoff's wake-up time while attempts remain and
    another attempt could help, else FAILED. ``stop``: the attempt may still be running (a deadline
    passed, a pod never started) and must be stopped."""
    execution = _check_attempt(item, execution, Event.FAIL_FINAL)
    decision = decide_after_failure(
        attempts=item.attempts,
        max_attempts=item.max_attempts,
        policy=item.retry,
        now=now,
        retryable=retryable,
        rng=rng,
    )
    effects: list[Effect] = [StopAttempt(execution)] if stop else []
    effects.append(EndAttempt(execution, Outcome.FAILED, reason, message))
    common = {"current_execution_id": None, "last_error": message, "reason": reason, "message": message}
    if decision.event is Event.FAIL_RETRYABLE:
        assert decision.next_attempt_at is not None and decision.delay is not None
        new, moved = _move(item, Event.FAIL_RETRYABLE, now, next_attempt_at=decision.next_attempt_at, **common)
        effects.append(
            Note(
                "Warning",
                "AttemptFailed",
                f"attempt {budget(new)} failed ({reason}): {message}; next attempt at "
                f"{decision.next_attempt_at.isoformat()} (in {seconds_text(decision.delay)})",
            )
        )
        return Decision(new, moved, tuple(effects))
    new, moved = _move(item, Event.FAIL_FINAL, now, next_attempt_at=None, completed_at=now, **common)
    why = "not retryable" if not retryable else "no attempts left"
    effects.append(
        Note(
            "Warning",
            "Failed",
            f"attempt {budget(new)} failed; {why} ({reason}): {message}; {command('retry', item)} re-opens it",
        )
    )
    return Decision(new, moved, tuple(effects))


def lost(
    item: Item, *, now: datetime, reason: str, message: str, stop: bool = False, rng: random.Random | None = None
) -> Decision:
    """The running attempt is gone without a result (a worker's lease expired, a Job was deleted, a
    pod never started): a failed attempt like any other, retried with backoff while attempts
    remain, as Airflow treats zombie tasks and procrastinate stalled jobs."""
    return failed(
        item, now=now, execution=item.current_execution_id, reason=reason, message=message, stop=stop, rng=rng
    )


def released(item: Item, *, now: datetime, execution: str, message: str) -> Decision:
    """A worker that is stopping gives its unfinished attempt back (SIGTERM, grace period over).

    It does not consume an attempt: nothing failed, the worker was asked to stop. The item is
    PENDING again and the next worker runs it; its late result, if any, is fenced out."""
    _check_attempt(item, execution, Event.RELEASE)
    new, moved = _move(
        item,
        Event.RELEASE,
        now,
        attempts=max(item.attempts - 1, 0),
        current_execution_id=None,
        reason=RELEASED,
        message=message,
    )
    return Decision(
        new,
        moved,
        (
            StopAttempt(execution),
            EndAttempt(execution, Outcome.RELEASED, RELEASED, message),
            Note(
                "Normal", RELEASED, f"attempt given back unfinished ({message}); it does not count against the budget"
            ),
        ),
    )


def cancel(item: Item, *, now: datetime, message: str = "cancelled on request") -> Decision:
    """Stop the item: PENDING, RETRY_WAIT or RUNNING → CANCELLED.

    Cancel while running: the decision carries :class:`StopAttempt` for the running attempt and
    records that attempt as CANCELLED. The item is CANCELLED as soon as the decision is written,
    whatever the attempt does next: its result is no longer the item's current attempt, so
    :func:`succeeded` and :func:`failed` refuse it and the local backend's fence rolls its data
    back. Re-open it with :func:`admin_retry`."""
    if not can(item.state, Event.CANCEL):
        hints = {
            WorkState.COMPLETE: f"it already completed; nothing is running ({command('retry', item)} runs it again)",
            WorkState.FAILED: (
                f"it already failed; {command('dismiss', item)} stops the doctor reporting it, "
                f"{command('retry', item)} runs it again"
            ),
            WorkState.CANCELLED: f"it is cancelled already ({command('retry', item)} re-opens it)",
        }
        raise _refuse(item, Event.CANCEL, f"can't cancel {item.ref}: {hints[item.state]}")
    effects: list[Effect] = []
    running = item.state is WorkState.RUNNING and item.current_execution_id is not None
    if running:
        assert item.current_execution_id is not None
        effects += [
            StopAttempt(item.current_execution_id),
            EndAttempt(item.current_execution_id, Outcome.CANCELLED, CANCELLED, message),
        ]
    new, moved = _move(
        item,
        Event.CANCEL,
        now,
        completed_at=now,
        next_attempt_at=None,
        current_execution_id=None,
        reason=CANCELLED,
        message=message,
    )
    stopped = (
        f"; attempt {item.attempts} (execution {item.current_execution_id}) is stopped and nothing it writes is kept"
        if running
        else ""
    )
    effects.append(Note("Normal", "Cancelled", f"{message}{stopped}"))
    return Decision(new, moved, tuple(effects))


def _reopen(item: Item, now: datetime, reason: str, message: str) -> Decision:
    new, moved = _move(
        item,
        Event.ADMIN_RETRY,
        now,
        attempts=0,
        next_attempt_at=None,
        completed_at=None,
        current_execution_id=None,
        reason=reason,
        message=message,
    )
    return Decision(new, moved, (Note("Normal", reason, message),))


def admin_retry(item: Item, *, now: datetime) -> Decision:
    """Re-open a FAILED, COMPLETE (a deliberate re-run or restatement) or CANCELLED item: PENDING
    with a fresh budget of ``max_attempts``. Attempt numbers and execution ids go on from where
    they were, so they never repeat."""
    if not can(item.state, Event.ADMIN_RETRY):
        if item.state is WorkState.RETRY_WAIT:
            when = item.next_attempt_at.isoformat() if item.next_attempt_at else "any moment"
            why = f"it is waiting for its next attempt at {when}; {command('wake', item)} runs it now"
        elif item.state is WorkState.RUNNING:
            why = f"attempt {item.attempts} is running now; {command('cancel', item)} stops it"
        else:
            why = "it is waiting to run already, with its attempts unused"
        raise _refuse(item, Event.ADMIN_RETRY, f"can't retry {item.ref}: {why}")
    message = f"admin retry: {item.state.value} → PENDING with a fresh budget of {item.max_attempts} attempts"
    return _reopen(item, now, "RetryRequested", message)


def wake(item: Item, *, now: datetime, requested: bool = False) -> Decision:
    """RETRY_WAIT → PENDING: its backoff elapsed, or (``requested``) a user wants it run now."""
    if not can(item.state, Event.WAKE):
        hints = {
            WorkState.PENDING: (
                f"it is not waiting for a retry; it starts at its desired time {item.desired_at.isoformat()}"
                if item.desired_at is not None and item.desired_at > now
                else "it is not waiting for a retry; it runs as soon as a worker is free"
            ),
            WorkState.RUNNING: f"attempt {item.attempts} is running now",
            WorkState.COMPLETE: f"it completed; {command('retry', item)} runs it again",
            WorkState.FAILED: f"it failed and has no attempts left; {command('retry', item)} gives it a fresh budget",
            WorkState.CANCELLED: f"it is cancelled; {command('retry', item)} re-opens it",
        }
        raise _refuse(item, Event.WAKE, f"can't wake {item.ref}: {hints[item.state]}")
    if not requested and not is_due(item, now):
        raise _refuse(item, Event.WAKE, f"{item.ref} is not due before {item.next_attempt_at}")
    new, moved = _move(item, Event.WAKE, now, next_attempt_at=None)
    if requested:
        when = item.next_attempt_at.isoformat() if item.next_attempt_at else "now"
        note = Note(
            "Normal", "WakeRequested", f"woken on request: attempt {item.attempts + 1} is due now, not at {when}"
        )
    else:
        note = Note("Normal", "BackoffElapsed", f"backoff elapsed; attempt {item.attempts + 1} is due")
    return Decision(new, moved, (note,))


def dismiss(item: Item, *, now: datetime, why: str) -> Decision:
    """FAILED → CANCELLED with reason ``Dismissed``: a failure someone looked at and accepted (a
    typo, a week that will never exist). The doctor reports FAILED items only, so it stops
    reporting this one; :func:`admin_retry` re-opens it."""
    if not can(item.state, Event.DISMISS):
        hints = {
            WorkState.PENDING: f"it has not failed; {command('cancel', item)} stops it",
            WorkState.RUNNING: f"it has not failed; {command('cancel', item)} stops it",
            WorkState.RETRY_WAIT: f"it has attempts left; {command('cancel', item)} stops it",
            WorkState.COMPLETE: "it completed",
            WorkState.CANCELLED: "it is cancelled already",
        }
        raise _refuse(item, Event.DISMISS, f"can't dismiss {item.ref}: only a FAILED item can be; {hints[item.state]}")
    message = f"dismissed: {why}" if why else "dismissed"
    new, moved = _move(item, Event.DISMISS, now, completed_at=now, reason=DISMISSED, message=message)
    note = Note(
        "Normal", DISMISSED, f"{message}; the doctor no longer reports it; {command('retry', item)} re-opens it"
    )
    return Decision(new, moved, (note,))


def invalid(item: Item, *, now: datetime, reason: str, message: str) -> Decision:
    """PENDING → FAILED without an attempt: the item itself is wrong (an unknown pipeline, a spec
    that does not validate); no attempt could succeed."""
    new, moved = _move(
        item,
        Event.FAIL_FINAL,
        now,
        completed_at=now,
        next_attempt_at=None,
        last_error=message,
        reason=reason,
        message=message,
    )
    return Decision(new, moved, (Note("Warning", reason, message),))


# --- the chain ------------------------------------------------------------------------------


class ChainAction(enum.StrEnum):
    CREATE = "create"  # no item for the next stage yet
    RERUN = "rerun"  # it finished (COMPLETE or FAILED) on an older upstream run: re-open it on this one
    UPDATE = "update"  # it has not run yet (PENDING, RETRY_WAIT) or is CANCELLED: point it at this run
    DEFER = "defer"  # it is running on an older upstream run: point it at this one; it re-runs when done
    NOTHING = "nothing"  # this upstream run was chained already (a replayed completion)


@dataclass(frozen=True)
class ChainDecision:
    action: ChainAction
    next: ChainNext
    downstream: Decision | None  # the next stage's item as it must become (None for CREATE and NOTHING)
    note: Note | None


def chain(step: ChainNext, downstream: Item | None, *, now: datetime) -> ChainDecision:
    """Decide for the next stage's item when its upstream completed (``step``, from :func:`succeeded`).

    The rule is the same on both backends: the next stage must end up computed from the newest
    upstream run. So whatever state the next item is in, it is pointed at this run (its params
    read this run's capture, and it records this run as its upstream), and then: created if absent;
    re-opened with a fresh budget if it finished (a restatement, or an admin re-run of the upstream);
    left to run if it has not yet; left to finish if it is running, after which :func:`succeeded`
    sees the newer upstream and runs it again; left alone if it is CANCELLED (a user stopped it). A
    run that was chained already changes nothing, so a replayed completion never re-runs it twice."""
    name = step.pipeline.rsplit(".", 1)[-1]
    if downstream is None:
        return ChainDecision(ChainAction.CREATE, step, None, Note("Normal", "Chained", f"created {name} for this run"))
    if downstream.upstream_execution_id == step.upstream_execution_id:
        return ChainDecision(ChainAction.NOTHING, step, None, None)
    pointed = downstream.model_copy(
        update={"params": dict(step.params), "upstream_execution_id": step.upstream_execution_id}
    )
    state = downstream.state
    if state in (WorkState.COMPLETE, WorkState.FAILED):
        why = f"re-running {name}: it was {state.value} on an older run of this stage"
        reopened = _reopen(pointed, now, UPSTREAM_CHANGED, why)
        return ChainDecision(ChainAction.RERUN, step, reopened, Note("Normal", "Chained", why))
    if state is WorkState.RUNNING:
        why = f"{name} is running on an older run of this stage; it runs again on this one when it finishes"
        return ChainDecision(ChainAction.DEFER, step, Decision(pointed), Note("Warning", "ChainDeferred", why))
    if is_terminal(state):  # CANCELLED
        why = f"{name} is CANCELLED and stays so; {command('retry', downstream)} runs it on this run's output"
        return ChainDecision(ChainAction.UPDATE, step, Decision(pointed), Note("Warning", "ChainSkipped", why))
    why = f"{name} will read this run's output"
    return ChainDecision(ChainAction.UPDATE, step, Decision(pointed), Note("Normal", "Chained", why))
