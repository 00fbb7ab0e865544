"""The work-item state machine: the one transition table.

Read by ``core.lifecycle``, the one module that decides what an event does to a work item (the
operator's planner and the local queue and worker only carry its decisions out). Every legal
(state, event) pair is in :data:`TRANSITIONS`; any other pair raises :class:`IllegalTransition`,
whose message speaks a user's words ("can't retry: …"), never the names of this table.
"""

from __future__ import annotations

import enum


class WorkState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Event(enum.StrEnum):
    """Why a work item changes state."""

    START = "start"  # an attempt was launched (a worker claimed it, or a Job was created)
    SUCCEED = "succeed"  # the attempt finished well
    FAIL_RETRYABLE = "fail_retryable"  # the attempt failed (or was lost) and attempts remain
    FAIL_FINAL = "fail_final"  # the attempt failed and the budget is spent, or the failure is terminal
    WAKE = "wake"  # the backoff delay elapsed, or a user asked to run it now
    CANCEL = "cancel"  # a user asked to stop
    ADMIN_RETRY = "admin_retry"  # re-opened with a fresh attempt budget (a user, or the chain re-running it)
    RELEASE = "release"  # a worker stopping gracefully gave its unfinished attempt back
    DISMISS = "dismiss"  # a user accepted a failure: the item stops being reported


TERMINAL_STATES: frozenset[WorkState] = frozenset({WorkState.COMPLETE, WorkState.FAILED, WorkState.CANCELLED})

_NON_TERMINAL = (WorkState.PENDING, WorkState.RUNNING, WorkState.RETRY_WAIT)

# The transition table. Every legal (state, event) pair is here; every other pair is an error.
TRANSITIONS: dict[tuple[WorkState, Event], WorkState] = {
    (WorkState.PENDING, Event.START): WorkState.RUNNING,
    (WorkState.RUNNING, Event.SUCCEED): WorkState.COMPLETE,
    (WorkState.RUNNING, Event.FAIL_RETRYABLE): WorkState.RETRY_WAIT,
    (WorkState.RUNNING, Event.FAIL_FINAL): WorkState.FAILED,
    (WorkState.RUNNING, Event.RELEASE): WorkState.PENDING,
    (WorkState.RETRY_WAIT, Event.WAKE): WorkState.PENDING,
    # An item judged invalid before any attempt (e.g. an unknown pipeline) fails terminally.
    (WorkState.PENDING, Event.FAIL_FINAL): WorkState.FAILED,
    **{(state, Event.CANCEL): WorkState.CANCELLED for state in _NON_TERMINAL},
    # Admin retry: FAILED for a human's second chance, COMPLETE for a deliberate re-run or
    # restatement, CANCELLED to re-open what was stopped (or dismissed).
    (WorkState.FAILED, Event.ADMIN_RETRY): WorkState.PENDING,
    (WorkState.COMPLETE, Event.ADMIN_RETRY): WorkState.PENDING,
    (WorkState.CANCELLED, Event.ADMIN_RETRY): WorkState.PENDING,
    # Dismissed: a failure someone looked at and accepted; the doctor reports FAILED items only.
    (WorkState.FAILED, Event.DISMISS): WorkState.CANCELLED,
}

# How a user would say each event and each state, for error messages.
VERBS: dict[Event, str] = {
    Event.START: "start an attempt",
    Event.SUCCEED: "record a success",
    Event.FAIL_RETRYABLE: "record a failure",
    Event.FAIL_FINAL: "record a failure",
    Event.WAKE: "wake",
    Event.CANCEL: "cancel",
    Event.ADMIN_RETRY: "retry",
    Event.RELEASE: "give the attempt back",
    Event.DISMISS: "dismiss",
}
DESCRIPTIONS: dict[WorkState, str] = {
    WorkState.PENDING: "waiting to run",
    WorkState.RUNNING: "running an attempt",
    WorkState.RETRY_WAIT: "waiting for its next attempt",
    WorkState.COMPLETE: "complete",
    WorkState.FAILED: "failed",
    WorkState.CANCELLED: "cancelled",
}


class IllegalTransition(ValueError):
    """A state change the table does not allow. ``core.lifecycle`` gives a more specific message
    (with the command that does what the user probably wants) where it knows one."""

    def __init__(self, state: WorkState, event: Event, message: str | None = None) -> None:
        super().__init__(message or f"can't {VERBS[event]}: the work item is {DESCRIPTIONS[state]} ({state.value})")
        self.state = state
        self.event = event


def transition(state: WorkState | str, event: Event) -> WorkState:
    """Return the state that ``event`` leads to from ``state``, or raise :class:`IllegalTransition`."""
    current = WorkState(state)
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise IllegalTransition(current, event) from None


def can(state: WorkState | str, event: Event) -> bool:
    return (WorkState(state), event) in TRANSITIONS


def is_terminal(state: WorkState | str) -> bool:
    return WorkState(state) in TERMINAL_STATES
