"""The work-item state machine: the one transition table.

Called by the local queue (``services.queue``) and by the operator's handlers; both ask
:func:`transition` before writing a new state, so an illegal move is an error in one place
rather than a silent overwrite in two.
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
    FAIL_RETRYABLE = "fail_retryable"  # the attempt failed and attempts remain
    FAIL_FINAL = "fail_final"  # the attempt failed and the budget is spent, or the failure is terminal
    WAKE = "wake"  # the backoff delay elapsed
    CANCEL = "cancel"  # a user asked to stop
    ADMIN_RETRY = "admin_retry"  # a human re-opened the item with a fresh attempt budget


TERMINAL_STATES: frozenset[WorkState] = frozenset({WorkState.COMPLETE, WorkState.FAILED, WorkState.CANCELLED})

_NON_TERMINAL = (WorkState.PENDING, WorkState.RUNNING, WorkState.RETRY_WAIT)

# The transition table. Every legal (state, event) pair is here; every other pair is an error.
TRANSITIONS: dict[tuple[WorkState, Event], WorkState] = {
    (WorkState.PENDING, Event.START): WorkState.RUNNING,
    (WorkState.RUNNING, Event.SUCCEED): WorkState.COMPLETE,
    (WorkState.RUNNING, Event.FAIL_RETRYABLE): WorkState.RETRY_WAIT,
    (WorkState.RUNNING, Event.FAIL_FINAL): WorkState.FAILED,
    (WorkState.RETRY_WAIT, Event.WAKE): WorkState.PENDING,
    # An item judged invalid before any attempt (e.g. an unknown pipeline) fails terminally.
    (WorkState.PENDING, Event.FAIL_FINAL): WorkState.FAILED,
    **{(state, Event.CANCEL): WorkState.CANCELLED for state in _NON_TERMINAL},
    # Admin retry: FAILED for a human's second chance, COMPLETE for a deliberate re-run or restatement.
    (WorkState.FAILED, Event.ADMIN_RETRY): WorkState.PENDING,
    (WorkState.COMPLETE, Event.ADMIN_RETRY): WorkState.PENDING,
}


class IllegalTransition(ValueError):
    """A state change the table does not allow."""

    def __init__(self, state: WorkState, event: Event) -> None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s == state)
        hint = ", ".join(allowed) if allowed else "nothing (terminal)"
        super().__init__(f"cannot {event.value} a work item in state {state.value}; allowed: {hint}")
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
