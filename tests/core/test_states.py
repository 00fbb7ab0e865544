"""The work-item state machine (SPEC §3.2), checked against an explicit, hand-written table.

Every pair of the product ``WorkState × Event`` is listed below: a target state for the legal
pairs, ``_`` for the illegal ones. Adding a state or an event without updating this table fails
``test_matrix_covers_the_full_product``.
"""

from __future__ import annotations

from collections import deque

import pytest

from market_spine.core.states import (
    DESCRIPTIONS,
    TERMINAL_STATES,
    TRANSITIONS,
    VERBS,
    Event,
    IllegalTransition,
    WorkState,
    can,
    is_terminal,
    transition,
)

S = WorkState
E = Event
_ = None  # illegal pair

COLUMNS: tuple[Event, ...] = (
    E.START,
    E.SUCCEED,
    E.FAIL_RETRYABLE,
    E.FAIL_FINAL,
    E.WAKE,
    E.CANCEL,
    E.ADMIN_RETRY,
    E.RELEASE,
    E.DISMISS,
)

# fmt: off
P, R, W, C, F, X = S.PENDING, S.RUNNING, S.RETRY_WAIT, S.COMPLETE, S.FAILED, S.CANCELLED
MATRIX: dict[WorkState, tuple[WorkState | None, ...]] = {
    #   START  SUCCEED  FAIL_RETRYABLE  FAIL_FINAL  WAKE  CANCEL  ADMIN_RETRY  RELEASE  DISMISS
    P: (R,     _,       _,              F,          _,    X,      _,           _,       _),
    R: (_,     C,       W,              F,          _,    X,      _,           P,       _),
    W: (_,     _,       _,              _,          P,    X,      _,           _,       _),
    C: (_,     _,       _,              _,          _,    _,      P,           _,       _),
    F: (_,     _,       _,              _,          _,    _,      P,           _,       X),
    X: (_,     _,       _,              _,          _,    _,      P,           _,       _),
}
# fmt: on

EXPECTED: dict[tuple[WorkState, Event], WorkState | None] = {
    (state, event): target for state, row in MATRIX.items() for event, target in zip(COLUMNS, row, strict=True)
}
ALL_PAIRS = [(state, event) for state in WorkState for event in Event]
LEGAL = {pair: target for pair, target in EXPECTED.items() if target is not None}
ILLEGAL = [pair for pair, target in EXPECTED.items() if target is None]


def _id(pair: tuple[WorkState, Event]) -> str:
    return f"{pair[0].value}-{pair[1].value}"


def test_matrix_covers_the_full_product() -> None:
    assert set(COLUMNS) == set(Event) and len(COLUMNS) == len(Event)
    assert set(MATRIX) == set(WorkState)
    assert set(EXPECTED) == set(ALL_PAIRS)
    assert len(ALL_PAIRS) == 6 * 9
    assert len(LEGAL) == 14
    assert len(ILLEGAL) == 40


def test_enum_values_are_stable() -> None:
    # Stored in the database and in CR status: renaming a value is a migration, not a refactor.
    assert [s.value for s in WorkState] == ["PENDING", "RUNNING", "RETRY_WAIT", "COMPLETE", "FAILED", "CANCELLED"]
    assert [e.value for e in Event] == [
        "start",
        "succeed",
        "fail_retryable",
        "fail_final",
        "wake",
        "cancel",
        "admin_retry",
        "release",
        "dismiss",
    ]


def test_module_table_equals_expected_table_exactly() -> None:
    assert dict(TRANSITIONS) == LEGAL


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[_id(p) for p in ALL_PAIRS])
def test_every_pair_of_the_product(pair: tuple[WorkState, Event]) -> None:
    state, event = pair
    expected = EXPECTED[pair]
    if expected is not None:
        assert transition(state, event) is expected
        assert transition(state.value, event) is expected  # states read back from the database are str
        assert can(state, event) is True
        assert can(state.value, event) is True
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(state, event)
        assert info.value.state is state
        assert info.value.event is event
        message = str(info.value)
        assert state.value in message
        assert message.startswith(f"can't {VERBS[event]}: the work item is {DESCRIPTIONS[state]}")
        assert event.value not in message.replace(VERBS[event], "")  # user words, not the table's names
        with pytest.raises(IllegalTransition):
            transition(state.value, event)
        assert can(state, event) is False
        assert can(state.value, event) is False


def test_illegal_transition_exact_messages() -> None:
    with pytest.raises(
        IllegalTransition, match=r"^can't record a success: the work item is waiting to run \(PENDING\)$"
    ):
        transition(WorkState.PENDING, Event.SUCCEED)
    with pytest.raises(IllegalTransition, match=r"^can't dismiss: the work item is cancelled \(CANCELLED\)$"):
        transition(WorkState.CANCELLED, Event.DISMISS)
    with pytest.raises(
        IllegalTransition,
        match=r"^can't start an attempt: the work item is waiting for its next attempt \(RETRY_WAIT\)$",
    ):
        transition(WorkState.RETRY_WAIT, Event.START)


@pytest.mark.parametrize("pair", ILLEGAL, ids=[_id(p) for p in ILLEGAL])
def test_no_message_names_an_event_of_the_table(pair: tuple[WorkState, Event]) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(*pair)
    for internal in ("admin_retry", "fail_final", "fail_retryable", "allowed:"):
        assert internal not in str(info.value)


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)
    with pytest.raises(ValueError, match="can't"):
        transition(WorkState.COMPLETE, Event.START)


@pytest.mark.parametrize("bad", ["BOGUS", "pending", "", "Running"])
def test_unknown_state_string_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        transition(bad, Event.START)
    with pytest.raises(ValueError):
        can(bad, Event.START)
    with pytest.raises(ValueError):
        is_terminal(bad)


def test_terminal_states() -> None:
    assert frozenset({WorkState.COMPLETE, WorkState.FAILED, WorkState.CANCELLED}) == TERMINAL_STATES
    assert isinstance(TERMINAL_STATES, frozenset)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (WorkState.PENDING, False),
        (WorkState.RUNNING, False),
        (WorkState.RETRY_WAIT, False),
        (WorkState.COMPLETE, True),
        (WorkState.FAILED, True),
        (WorkState.CANCELLED, True),
    ],
)
def test_is_terminal(state: WorkState, terminal: bool) -> None:
    assert is_terminal(state) is terminal
    assert is_terminal(state.value) is terminal


@pytest.mark.parametrize("state", [s for s in WorkState if s not in TERMINAL_STATES])
def test_cancelled_reachable_from_each_non_terminal_state(state: WorkState) -> None:
    assert transition(state, Event.CANCEL) is WorkState.CANCELLED


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_cancel_is_illegal_from_terminal_states(state: WorkState) -> None:
    with pytest.raises(IllegalTransition):
        transition(state, Event.CANCEL)


def test_cancelled_leaves_only_through_admin_retry() -> None:
    # A cancelled (or dismissed) item is re-opened by an admin retry, and by nothing else.
    assert [e for e in Event if can(WorkState.CANCELLED, e)] == [Event.ADMIN_RETRY]


@pytest.mark.parametrize("state", [WorkState.FAILED, WorkState.COMPLETE])
def test_failed_and_complete_leave_only_through_admin_retry_or_dismissal(state: WorkState) -> None:
    assert transition(state, Event.ADMIN_RETRY) is WorkState.PENDING
    leaving = {Event.ADMIN_RETRY, Event.DISMISS} if state is WorkState.FAILED else {Event.ADMIN_RETRY}
    for event in Event:
        if event not in leaving:
            with pytest.raises(IllegalTransition):
                transition(state, event)
    assert {e for (s, e) in TRANSITIONS if s is state} == leaving


def test_admin_retry_from_every_terminal_state() -> None:
    sources = {s for (s, e) in TRANSITIONS if e is Event.ADMIN_RETRY}
    assert sources == {WorkState.FAILED, WorkState.COMPLETE, WorkState.CANCELLED}


def test_only_admin_retry_wake_and_release_lead_back_to_pending() -> None:
    into_pending = {(s, e) for (s, e), t in TRANSITIONS.items() if t is WorkState.PENDING}
    assert into_pending == {
        (WorkState.RETRY_WAIT, Event.WAKE),
        (WorkState.RUNNING, Event.RELEASE),
        (WorkState.FAILED, Event.ADMIN_RETRY),
        (WorkState.COMPLETE, Event.ADMIN_RETRY),
        (WorkState.CANCELLED, Event.ADMIN_RETRY),
    }


def test_nothing_leads_back_to_running_except_start_from_pending() -> None:
    into_running = {pair for pair, t in TRANSITIONS.items() if t is WorkState.RUNNING}
    assert into_running == {(WorkState.PENDING, Event.START)}


def test_every_state_reachable_from_pending() -> None:
    seen = {WorkState.PENDING}
    queue = deque([WorkState.PENDING])
    while queue:
        state = queue.popleft()
        for event in Event:
            if can(state, event):
                target = transition(state, event)
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
    assert seen == set(WorkState)


def _run(start: WorkState, events: list[Event]) -> list[WorkState]:
    path = [start]
    for event in events:
        path.append(transition(path[-1], event))
    return path


def test_happy_path() -> None:
    assert _run(WorkState.PENDING, [Event.START, Event.SUCCEED]) == [
        WorkState.PENDING,
        WorkState.RUNNING,
        WorkState.COMPLETE,
    ]


def test_retry_then_fail_then_admin_retry_then_succeed() -> None:
    events = [
        Event.START,
        Event.FAIL_RETRYABLE,
        Event.WAKE,
        Event.START,
        Event.FAIL_RETRYABLE,
        Event.WAKE,
        Event.START,
        Event.FAIL_FINAL,
        Event.ADMIN_RETRY,
        Event.START,
        Event.SUCCEED,
        Event.ADMIN_RETRY,  # a deliberate re-run of a COMPLETE item
    ]
    assert _run(WorkState.PENDING, events) == [
        WorkState.PENDING,
        WorkState.RUNNING,
        WorkState.RETRY_WAIT,
        WorkState.PENDING,
        WorkState.RUNNING,
        WorkState.RETRY_WAIT,
        WorkState.PENDING,
        WorkState.RUNNING,
        WorkState.FAILED,
        WorkState.PENDING,
        WorkState.RUNNING,
        WorkState.COMPLETE,
        WorkState.PENDING,
    ]


def test_retry_wait_cannot_be_started_directly() -> None:
    # A worker must WAKE the item (back to PENDING) before claiming it again.
    with pytest.raises(IllegalTransition):
        transition(WorkState.RETRY_WAIT, Event.START)
