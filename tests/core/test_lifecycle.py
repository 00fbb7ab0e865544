"""The work-item lifecycle (``core.lifecycle``): what each event does, for both backends.

Every function is fed an :class:`Item` and a clock we hold; the decision's new item, transitions
and effects are checked exactly, and every refusal must speak a user's words and name the command
that does what they probably meant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market_spine.core import lifecycle as lc
from market_spine.core.backoff import RetryPolicy
from market_spine.core.states import Event, IllegalTransition, WorkState

T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)
INGEST = "finra.otc_transparency.ingest_week"
NORMALIZE = "finra.otc_transparency.normalize_week"
REF = f"{INGEST} --week 2025-11-10 --tier OTC"


def item(**values: object) -> lc.Item:
    base: dict[str, object] = {"ref": REF, "pipeline": INGEST, "params": {"source": "finra-api"}}
    return lc.Item.model_validate(base | values)


def running(attempt: int = 1, **values: object) -> lc.Item:
    decision = lc.claim(
        item(attempts=attempt - 1, total_attempts=attempt - 1, **values), now=T0, execution=f"e{attempt}"
    )
    return decision.item


def test_claim_starts_an_attempt_numbered_over_the_whole_life() -> None:
    decision = lc.claim(item(attempts=0, total_attempts=4, capture_id="old"), now=T0, execution="e5")
    new = decision.item
    assert decision.transitions == ((WorkState.PENDING, WorkState.RUNNING),)
    assert (new.attempts, new.total_attempts) == (1, 5)
    assert new.current_execution_id == new.latest_execution_id == "e5"
    assert (new.started_at, new.capture_id, new.changed_at) == (T0, None, T0)
    assert decision.of(lc.StartAttempt) == [lc.StartAttempt(5, "e5")]
    with pytest.raises(IllegalTransition, match=r"^can't start .*: it is RETRY_WAIT, not PENDING$"):
        lc.claim(item(state=WorkState.RETRY_WAIT), now=T0, execution="e1")


def test_success_completes_records_the_capture_and_asks_for_the_chain() -> None:
    current = running(chain=True, last_error="earlier failure")
    decision = lc.succeeded(current, now=T0 + timedelta(seconds=42), execution="e1", capture_id="cap")
    new = decision.item
    assert decision.transitions == ((WorkState.RUNNING, WorkState.COMPLETE),)
    assert (new.capture_id, new.current_execution_id, new.last_error, new.completed_at) == (
        "cap",
        None,
        None,
        T0 + timedelta(seconds=42),
    )
    assert decision.of(lc.EndAttempt) == [lc.EndAttempt("e1", lc.Outcome.SUCCEEDED, capture_id="cap")]
    assert decision.notes[0].message == "attempt 1/3 succeeded in 42s; capture cap"
    (step,) = decision.of(lc.ChainNext)
    # The next stage reads exactly this capture, never the source.
    assert step == lc.ChainNext(NORMALIZE, {"capture_id": "cap"}, "e1")


def test_a_late_result_of_an_attempt_that_no_longer_counts_is_refused() -> None:
    cancelled = lc.cancel(running(), now=T0).item
    with pytest.raises(IllegalTransition, match=r"^attempt e1 of .* no longer counts: it is CANCELLED now"):
        lc.succeeded(cancelled, now=T0, execution="e1", capture_id="cap")
    with pytest.raises(IllegalTransition, match="its attempt is now execution e2"):
        lc.failed(running(2), now=T0, execution="e1", reason="JobFailed", message="boom")


def test_failures_follow_the_backoff_then_fail() -> None:
    policy = RetryPolicy(backoff_seconds=60)
    first = lc.failed(running(retry=policy), now=T0, execution="e1", reason="SourceUnavailable", message="503")
    assert first.item.state is WorkState.RETRY_WAIT and first.item.next_attempt_at == T0 + timedelta(seconds=60)
    assert (first.item.reason, first.item.last_error, first.item.current_execution_id) == (
        "SourceUnavailable",
        "503",
        None,
    )
    assert first.notes[0].message.endswith("next attempt at 2025-12-16T10:31:00+00:00 (in 60s)")
    last = lc.failed(running(3, retry=policy), now=T0, execution="e3", reason="SourceUnavailable", message="503")
    assert last.item.state is WorkState.FAILED and last.item.completed_at == T0
    assert last.notes[0].message == (
        f"attempt 3/3 failed; no attempts left (SourceUnavailable): 503; `spine work retry {REF}` re-opens it"
    )
    permanent = lc.failed(running(), now=T0, execution="e1", reason="InputFileError", message="bad", retryable=False)
    assert permanent.item.state is WorkState.FAILED and "not retryable" in permanent.notes[0].message


def test_a_lost_attempt_is_a_failure_with_its_reason_and_is_stopped_if_asked() -> None:
    decision = lc.lost(running(), now=T0, reason=lc.WORKER_LOST, message="worker w1 stopped renewing its lease")
    assert decision.item.state is WorkState.RETRY_WAIT and decision.item.reason == "WorkerLost"
    assert decision.of(lc.StopAttempt) == []
    assert decision.of(lc.EndAttempt)[0].outcome is lc.Outcome.FAILED
    stopped = lc.lost(running(), now=T0, reason="PodStartTimeout", message="no pod", stop=True)
    assert stopped.of(lc.StopAttempt) == [lc.StopAttempt("e1")]


def test_a_released_attempt_goes_back_to_pending_without_using_the_budget() -> None:
    decision = lc.released(running(2), now=T0, execution="e2", message="worker w1 is stopping")
    new = decision.item
    assert decision.transitions == ((WorkState.RUNNING, WorkState.PENDING),)
    assert (new.attempts, new.total_attempts, new.current_execution_id) == (1, 2, None)
    assert decision.of(lc.EndAttempt) == [lc.EndAttempt("e2", lc.Outcome.RELEASED, "Released", "worker w1 is stopping")]


def test_cancel_while_running_stops_the_attempt_and_records_it_cancelled() -> None:
    decision = lc.cancel(running(), now=T0)
    assert decision.item.state is WorkState.CANCELLED and decision.item.current_execution_id is None
    assert decision.of(lc.StopAttempt) == [lc.StopAttempt("e1")]
    assert decision.of(lc.EndAttempt)[0].outcome is lc.Outcome.CANCELLED
    assert decision.notes[0].message.endswith("attempt 1 (execution e1) is stopped and nothing it writes is kept")
    waiting = lc.cancel(item(state=WorkState.RETRY_WAIT, next_attempt_at=T0), now=T0)
    assert waiting.of(lc.StopAttempt) == [] and waiting.item.next_attempt_at is None


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (WorkState.COMPLETE, f"it already completed; nothing is running (`spine work retry {REF}` runs it again)"),
        (
            WorkState.FAILED,
            f"it already failed; `spine work dismiss {REF}` stops the doctor reporting it, "
            f"`spine work retry {REF}` runs it again",
        ),
        (WorkState.CANCELLED, f"it is cancelled already (`spine work retry {REF}` re-opens it)"),
    ],
)
def test_cancel_refusals_say_what_to_do(state: WorkState, message: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        lc.cancel(item(state=state), now=T0)
    assert str(info.value) == f"can't cancel {REF}: {message}"


@pytest.mark.parametrize("state", [WorkState.FAILED, WorkState.COMPLETE, WorkState.CANCELLED])
def test_admin_retry_reopens_with_a_fresh_budget(state: WorkState) -> None:
    before = item(state=state, attempts=3, total_attempts=3, completed_at=T0, reason="X", message="x")
    decision = lc.admin_retry(before, now=T0)
    new = decision.item
    assert decision.transitions == ((state, WorkState.PENDING),)
    assert (new.attempts, new.total_attempts, new.completed_at) == (0, 3, None)
    assert new.reason == "RetryRequested"


def test_admin_retry_refusals_point_at_wake_and_cancel() -> None:
    waiting = item(state=WorkState.RETRY_WAIT, next_attempt_at=T0)
    with pytest.raises(IllegalTransition) as info:
        lc.admin_retry(waiting, now=T0)
    assert str(info.value) == (
        f"can't retry {REF}: it is waiting for its next attempt at 2025-12-16T10:30:00+00:00; "
        f"`spine work wake {REF}` runs it now"
    )
    with pytest.raises(IllegalTransition, match=f"attempt 1 is running now; `spine work cancel {REF}` stops it"):
        lc.admin_retry(running(), now=T0)


def test_wake_runs_a_waiting_item_now_or_when_due() -> None:
    waiting = item(state=WorkState.RETRY_WAIT, attempts=1, next_attempt_at=T0 + timedelta(minutes=5))
    requested = lc.wake(waiting, now=T0, requested=True)
    assert requested.item.state is WorkState.PENDING and requested.item.next_attempt_at is None
    assert requested.notes[0].reason == "WakeRequested" and requested.item.attempts == 1
    with pytest.raises(IllegalTransition, match="is not due before"):
        lc.wake(waiting, now=T0)
    assert lc.wake(waiting, now=T0 + timedelta(minutes=5)).notes[0].reason == "BackoffElapsed"


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        (WorkState.PENDING, "it is not waiting for a retry; it runs as soon as a worker is free"),
        (WorkState.RUNNING, "attempt 0 is running now"),
        (WorkState.COMPLETE, f"it completed; `spine work retry {REF}` runs it again"),
        (WorkState.FAILED, f"it failed and has no attempts left; `spine work retry {REF}` gives it a fresh budget"),
        (WorkState.CANCELLED, f"it is cancelled; `spine work retry {REF}` re-opens it"),
    ],
)
def test_wake_refusals(state: WorkState, fragment: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        lc.wake(item(state=state), now=T0, requested=True)
    assert str(info.value) == f"can't wake {REF}: {fragment}"


def test_dismiss_accepts_a_failure_and_retry_reopens_it() -> None:
    failed = item(state=WorkState.FAILED, attempts=3, last_error="no such week")
    decision = lc.dismiss(failed, now=T0, why="a typo: week 9999")
    new = decision.item
    assert decision.transitions == ((WorkState.FAILED, WorkState.CANCELLED),)
    assert (new.reason, new.message, new.last_error) == ("Dismissed", "dismissed: a typo: week 9999", "no such week")
    assert lc.admin_retry(new, now=T0).item.state is WorkState.PENDING
    with pytest.raises(IllegalTransition) as info:
        lc.dismiss(item(state=WorkState.RETRY_WAIT), now=T0, why="")
    assert str(info.value) == (
        f"can't dismiss {REF}: only a FAILED item can be; it has attempts left; `spine work cancel {REF}` stops it"
    )


def test_no_refusal_speaks_the_tables_names() -> None:
    events = (
        lambda i: lc.admin_retry(i, now=T0),
        lambda i: lc.cancel(i, now=T0),
        lambda i: lc.wake(i, now=T0, requested=True),
        lambda i: lc.dismiss(i, now=T0, why="x"),
    )
    for state in WorkState:
        for event in events:
            try:
                event(item(state=state, next_attempt_at=T0))
            except IllegalTransition as refused:
                text = str(refused)
                assert text.startswith("can't ") and REF in text
                for internal in ("admin_retry", "fail_final", "allowed:", "Event."):
                    assert internal not in text


def test_a_success_on_an_input_replaced_meanwhile_runs_again_and_does_not_chain() -> None:
    current = running(pipeline=NORMALIZE, chain=True, upstream_execution_id="up2")
    decision = lc.succeeded(current, now=T0, execution="e1", capture_id="c1", read_upstream="up1")
    assert decision.transitions == ((WorkState.RUNNING, WorkState.COMPLETE), (WorkState.COMPLETE, WorkState.PENDING))
    assert decision.item.reason == lc.UPSTREAM_CHANGED and decision.of(lc.ChainNext) == []


def _downstream(state: WorkState, upstream: str = "e0") -> lc.Item:
    return item(
        pipeline=NORMALIZE, chain=True, state=state, params={"capture_id": "old"}, upstream_execution_id=upstream
    )


@pytest.mark.parametrize(
    ("state", "action", "after", "reason"),
    [
        (WorkState.COMPLETE, lc.ChainAction.RERUN, WorkState.PENDING, "Chained"),
        (WorkState.FAILED, lc.ChainAction.RERUN, WorkState.PENDING, "Chained"),
        (WorkState.PENDING, lc.ChainAction.UPDATE, WorkState.PENDING, "Chained"),
        (WorkState.RETRY_WAIT, lc.ChainAction.UPDATE, WorkState.RETRY_WAIT, "Chained"),
        (WorkState.RUNNING, lc.ChainAction.DEFER, WorkState.RUNNING, "ChainDeferred"),
        (WorkState.CANCELLED, lc.ChainAction.UPDATE, WorkState.CANCELLED, "ChainSkipped"),
    ],
)
def test_the_chain_points_the_next_stage_at_the_newest_run(
    state: WorkState, action: lc.ChainAction, after: WorkState, reason: str
) -> None:
    step = lc.ChainNext(NORMALIZE, {"capture_id": "new"}, "e1")
    decision = lc.chain(step, _downstream(state), now=T0)
    assert decision.action is action
    assert decision.downstream is not None
    new = decision.downstream.item
    assert new.state is after
    assert (new.params, new.upstream_execution_id) == ({"capture_id": "new"}, "e1")
    assert decision.note is not None and decision.note.reason == reason
    if action is lc.ChainAction.RERUN:
        assert new.attempts == 0 and new.reason == lc.UPSTREAM_CHANGED


def test_the_chain_creates_the_next_stage_and_ignores_a_replayed_completion() -> None:
    step = lc.ChainNext(NORMALIZE, {"capture_id": "new"}, "e1")
    assert lc.chain(step, None, now=T0).action is lc.ChainAction.CREATE
    replayed = lc.chain(step, _downstream(WorkState.COMPLETE, upstream="e1"), now=T0)
    assert (replayed.action, replayed.downstream, replayed.note) == (lc.ChainAction.NOTHING, None, None)


def test_downstream_params_drop_every_source_option() -> None:
    params = {"file": "/x.csv", "url": "u", "source": "finra-api", "capture_date": "2025-12-16", "capture_id": "old"}
    assert lc.downstream_params(params, "new") == {"capture_id": "new"}
    assert lc.downstream_params(params, None) == {}


def test_queue_order_is_priority_then_desired_time_then_age_then_name() -> None:
    keys = [
        lc.queue_order(25, "2025-12-01", "a", "x"),
        lc.queue_order(100, "2025-12-02", "b", "y"),
        lc.queue_order(100, "2025-12-01", "c", "z"),
        lc.queue_order(100, "2025-12-01", "b", "w"),
    ]
    assert sorted(keys) == [keys[3], keys[2], keys[1], keys[0]]


def test_execution_ids_never_repeat_across_items_or_attempts() -> None:
    ids = {lc.execution_id(uid, n) for uid in ("uid-1", "local:1:2025", "local:1:2026") for n in (1, 2)}
    assert len(ids) == 6 and lc.execution_id("uid-1", 1) == lc.execution_id("uid-1", 1)


def test_every_event_function_moves_through_the_transition_table() -> None:
    # Each decision's transitions are pairs of the table: the lifecycle adds rules, not states.
    from market_spine.core.states import TRANSITIONS

    legal = {(s, t) for (s, _e), t in TRANSITIONS.items()}
    decisions = [
        lc.claim(item(), now=T0, execution="e1"),
        lc.succeeded(running(), now=T0, execution="e1", capture_id="c"),
        lc.failed(running(), now=T0, execution="e1", reason="R", message="m"),
        lc.released(running(), now=T0, execution="e1", message="m"),
        lc.cancel(running(), now=T0),
        lc.admin_retry(item(state=WorkState.CANCELLED), now=T0),
        lc.wake(item(state=WorkState.RETRY_WAIT), now=T0, requested=True),
        lc.dismiss(item(state=WorkState.FAILED), now=T0, why=""),
        lc.invalid(item(), now=T0, reason="InvalidSpec", message="bad"),
    ]
    for decision in decisions:
        assert decision.transitions and set(decision.transitions) <= legal
    assert Event.RELEASE in {e for (_s, e) in TRANSITIONS}
