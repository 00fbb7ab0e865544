"""Retry policy and backoff (SPEC §3.3): the worked numbers, the cap, jitter, validation."""

from __future__ import annotations

import random
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from market_spine.core.backoff import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_FACTOR,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    FailureDecision,
    RetryPolicy,
    decide_after_failure,
)
from market_spine.core.states import Event, WorkState, transition

NOW = datetime(2025, 12, 15, 10, 30, tzinfo=UTC)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


# --- defaults -------------------------------------------------------------------------------------


def test_defaults() -> None:
    assert DEFAULT_BACKOFF_SECONDS == 300
    assert DEFAULT_FACTOR == 2.0
    assert DEFAULT_MAX_BACKOFF_SECONDS == 3600
    assert DEFAULT_MAX_ATTEMPTS == 3
    policy = RetryPolicy()
    assert policy.backoff_seconds == 300
    assert policy.factor == 2.0
    assert policy.max_backoff_seconds == 3600
    assert policy.jitter_seconds == 0


def test_default_first_retry_is_after_five_minutes() -> None:
    # The seed's "first retry after 5 minutes" is the default backoffSeconds: 300.
    assert RetryPolicy().delay_after(1) == timedelta(minutes=5)
    decision = decide_after_failure(attempts=1, max_attempts=DEFAULT_MAX_ATTEMPTS, policy=RetryPolicy(), now=NOW)
    assert decision.event is Event.FAIL_RETRYABLE
    assert decision.delay == timedelta(minutes=5)
    assert decision.next_attempt_at == datetime(2025, 12, 15, 10, 35, tzinfo=UTC)


def test_default_sequence() -> None:
    policy = RetryPolicy()
    assert [policy.delay_after(n) for n in range(1, 7)] == [
        seconds(300),
        seconds(600),
        seconds(1200),
        seconds(2400),
        seconds(3600),  # capped at the default max of one hour
        seconds(3600),
    ]


# --- SPEC §3.3 worked example -----------------------------------------------------------------------


def test_spec_worked_example_waits_60_then_120_then_failed() -> None:
    policy = RetryPolicy(backoffSeconds=60, factor=2)
    first = decide_after_failure(attempts=1, max_attempts=3, policy=policy, now=NOW)
    assert first == FailureDecision(Event.FAIL_RETRYABLE, NOW + seconds(60), seconds(60))
    second = decide_after_failure(attempts=2, max_attempts=3, policy=policy, now=NOW)
    assert second == FailureDecision(Event.FAIL_RETRYABLE, NOW + seconds(120), seconds(120))
    third = decide_after_failure(attempts=3, max_attempts=3, policy=policy, now=NOW)
    assert third == FailureDecision(Event.FAIL_FINAL, None, None)


def test_spec_worked_example_through_the_state_machine() -> None:
    """Three attempts that all fail: RETRY_WAIT 60 s, RETRY_WAIT 120 s, then FAILED."""
    policy = RetryPolicy(backoffSeconds=60, factor=2)
    state, clock, attempts, waits = WorkState.PENDING, NOW, 0, []
    while state is not WorkState.FAILED:
        state = transition(state, Event.START)
        attempts += 1
        decision = decide_after_failure(attempts=attempts, max_attempts=3, policy=policy, now=clock)
        state = transition(state, decision.event)
        if state is WorkState.RETRY_WAIT:
            assert decision.delay is not None and decision.next_attempt_at is not None
            waits.append(decision.delay.total_seconds())
            clock = decision.next_attempt_at
            state = transition(state, Event.WAKE)
    assert attempts == 3
    assert waits == [60.0, 120.0]
    assert clock == NOW + seconds(180)


@pytest.mark.parametrize(
    ("base", "factor", "cap", "expected"),
    [
        (60, 2.0, 3600, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]),
        (10, 3.0, 100, [10, 30, 90, 100, 100]),
        (100, 1.5, 1000, [100, 150, 225, 337.5, 506.25, 759.375, 1000]),
        (30, 1.0, 30, [30, 30, 30, 30]),  # factor 1: constant delay
        (45, 10.0, 604_800, [45, 450, 4500, 45_000, 450_000, 604_800]),
        (86_400, 2.0, 86_400, [86_400, 86_400]),  # max == base
    ],
)
def test_delay_formula(base: int, factor: float, cap: int, expected: list[float]) -> None:
    policy = RetryPolicy(backoff_seconds=base, factor=factor, max_backoff_seconds=cap)
    assert [policy.delay_after(n) for n in range(1, len(expected) + 1)] == [seconds(x) for x in expected]


@pytest.mark.parametrize("attempt", [1, 2, 5, 10, 20, 50, 100])
def test_delay_never_exceeds_cap_without_jitter(attempt: int) -> None:
    policy = RetryPolicy(backoffSeconds=60, factor=10, maxBackoffSeconds=7200)
    delay = policy.delay_after(attempt)
    assert seconds(60) <= delay <= seconds(7200)


def test_delay_is_non_decreasing() -> None:
    policy = RetryPolicy(backoffSeconds=7, factor=1.7, maxBackoffSeconds=5000)
    delays = [policy.delay_after(n) for n in range(1, 40)]
    assert delays == sorted(delays)
    assert delays[-1] == seconds(5000)


@pytest.mark.parametrize(("factor", "attempt"), [(2.0, 1100), (10.0, 400)])
def test_delay_for_huge_attempt_numbers_is_the_cap(factor: float, attempt: int) -> None:
    policy = RetryPolicy(backoffSeconds=60, factor=factor, maxBackoffSeconds=3600)
    assert policy.delay_after(attempt) == seconds(3600)


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_delay_after_is_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        RetryPolicy().delay_after(attempt)


# --- jitter -----------------------------------------------------------------------------------------


def test_no_jitter_does_not_consume_randomness() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert RetryPolicy(backoffSeconds=60).delay_after(1, rng) == seconds(60)
    assert rng.getstate() == state


def test_jitter_is_bounded() -> None:
    policy = RetryPolicy(backoffSeconds=60, factor=2, maxBackoffSeconds=600, jitterSeconds=30)
    rng = random.Random(12345)
    for attempt in range(1, 12):
        base = min(60 * 2 ** (attempt - 1), 600)
        for _ in range(200):
            delay = policy.delay_after(attempt, rng)
            assert seconds(base) <= delay <= seconds(base + 30)


def test_jitter_is_added_after_the_cap() -> None:
    # SPEC §3.3: min(backoff × factor^(n−1), max) *plus* jitter.
    policy = RetryPolicy(backoffSeconds=60, maxBackoffSeconds=60, jitterSeconds=10)
    rng = random.Random(7)
    delays = [policy.delay_after(5, rng) for _ in range(500)]
    assert all(seconds(60) <= d <= seconds(70) for d in delays)
    assert any(d > seconds(60) for d in delays)


def test_jitter_is_deterministic_with_a_seeded_random() -> None:
    policy = RetryPolicy(backoffSeconds=60, jitterSeconds=30)
    first = [policy.delay_after(n, random.Random(42)) for n in range(1, 6)]
    second = [policy.delay_after(n, random.Random(42)) for n in range(1, 6)]
    assert first == second
    expected_jitter = random.Random(42).uniform(0, 30)
    assert policy.delay_after(1, random.Random(42)) == seconds(60 + expected_jitter)
    assert policy.delay_after(3, random.Random(42)) == seconds(240 + expected_jitter)


def test_jitter_sequence_from_one_rng_is_reproducible() -> None:
    policy = RetryPolicy(backoffSeconds=60, jitterSeconds=30)
    rng_a, rng_b = random.Random(99), random.Random(99)
    assert [policy.delay_after(1, rng_a) for _ in range(20)] == [policy.delay_after(1, rng_b) for _ in range(20)]
    # …and the values actually vary: jitter is not a constant offset.
    assert len({policy.delay_after(1, rng_a) for _ in range(20)}) > 1


def test_different_seeds_give_different_jitter() -> None:
    policy = RetryPolicy(backoffSeconds=60, jitterSeconds=30)
    assert policy.delay_after(1, random.Random(1)) != policy.delay_after(1, random.Random(2))


def test_decide_after_failure_with_jitter_is_deterministic() -> None:
    policy = RetryPolicy(backoffSeconds=60, jitterSeconds=20)
    a = decide_after_failure(attempts=2, max_attempts=5, policy=policy, now=NOW, rng=random.Random(3))
    b = decide_after_failure(attempts=2, max_attempts=5, policy=policy, now=NOW, rng=random.Random(3))
    assert a == b
    expected = seconds(120 + random.Random(3).uniform(0, 20))
    assert a.delay == expected
    assert a.next_attempt_at == NOW + expected


# --- decide_after_failure ------------------------------------------------------------------------------


def test_decide_refuses_naive_datetimes() -> None:
    naive = datetime(2025, 12, 15, 10, 30)  # noqa: DTZ001 - deliberately naive
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_after_failure(attempts=1, max_attempts=3, policy=RetryPolicy(), now=naive)
    # Refused even when the outcome would not need the clock at all.
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_after_failure(attempts=3, max_attempts=3, policy=RetryPolicy(), now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_after_failure(attempts=1, max_attempts=3, policy=RetryPolicy(), now=naive, retryable=False)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2025, 12, 15, 5, 30, tzinfo=ZoneInfo("America/New_York")),
        datetime(2025, 12, 15, 19, 30, tzinfo=timezone(timedelta(hours=9))),
        datetime(2025, 12, 15, 10, 30, tzinfo=UTC),
    ],
)
def test_decide_accepts_any_aware_zone_and_keeps_it(now: datetime) -> None:
    decision = decide_after_failure(attempts=1, max_attempts=3, policy=RetryPolicy(backoffSeconds=60), now=now)
    assert decision.next_attempt_at == now + seconds(60)
    assert decision.next_attempt_at is not None
    assert decision.next_attempt_at.tzinfo is now.tzinfo


def test_non_retryable_failure_is_final_on_the_first_attempt() -> None:
    decision = decide_after_failure(attempts=1, max_attempts=10, policy=RetryPolicy(), now=NOW, retryable=False)
    assert decision == FailureDecision(Event.FAIL_FINAL, None, None)


@pytest.mark.parametrize(
    ("attempts", "max_attempts", "event"),
    [
        (1, 1, Event.FAIL_FINAL),
        (1, 2, Event.FAIL_RETRYABLE),
        (2, 2, Event.FAIL_FINAL),
        (3, 2, Event.FAIL_FINAL),  # over budget (e.g. a budget lowered while running)
        (19, 20, Event.FAIL_RETRYABLE),
        (20, 20, Event.FAIL_FINAL),
    ],
)
def test_budget(attempts: int, max_attempts: int, event: Event) -> None:
    decision = decide_after_failure(attempts=attempts, max_attempts=max_attempts, policy=RetryPolicy(), now=NOW)
    assert decision.event is event
    if event is Event.FAIL_FINAL:
        assert decision.next_attempt_at is None and decision.delay is None
    else:
        assert decision.delay is not None
        assert decision.next_attempt_at == NOW + decision.delay


def test_decision_event_is_legal_from_running() -> None:
    for attempts in (1, 2, 3):
        decision = decide_after_failure(attempts=attempts, max_attempts=3, policy=RetryPolicy(), now=NOW)
        assert transition(WorkState.RUNNING, decision.event) in {WorkState.RETRY_WAIT, WorkState.FAILED}


def test_decide_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        decide_after_failure(1, 3, RetryPolicy(), NOW)  # type: ignore[misc]


def test_failure_decision_is_frozen() -> None:
    decision = FailureDecision(Event.FAIL_FINAL, None, None)
    with pytest.raises(FrozenInstanceError):
        decision.event = Event.FAIL_RETRYABLE  # type: ignore[misc]


# --- RetryPolicy validation --------------------------------------------------------------------------


def test_camel_case_aliases_validate() -> None:
    policy = RetryPolicy.model_validate(
        {"backoffSeconds": 60, "factor": 3, "maxBackoffSeconds": 600, "jitterSeconds": 5}
    )
    assert (policy.backoff_seconds, policy.factor, policy.max_backoff_seconds, policy.jitter_seconds) == (
        60,
        3.0,
        600,
        5,
    )
    assert policy.model_dump(by_alias=True) == {
        "backoffSeconds": 60,
        "factor": 3.0,
        "maxBackoffSeconds": 600,
        "jitterSeconds": 5,
    }
    assert RetryPolicy.model_validate(policy.model_dump(by_alias=True)) == policy


def test_snake_case_names_validate_too() -> None:
    snake = RetryPolicy(backoff_seconds=60, factor=3, max_backoff_seconds=600, jitter_seconds=5)
    camel = RetryPolicy(backoffSeconds=60, factor=3, maxBackoffSeconds=600, jitterSeconds=5)
    assert snake == camel


@pytest.mark.parametrize(
    "extra",
    [{"backoff": 60}, {"maxAttempts": 3}, {"jitter": 1}, {"max_backoff": 10}],
)
def test_unknown_fields_are_rejected(extra: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(extra)


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(ValidationError):
        policy.backoff_seconds = 1  # type: ignore[misc]


def test_max_below_base_is_rejected() -> None:
    with pytest.raises(ValidationError, match="maxBackoffSeconds must be >= backoffSeconds"):
        RetryPolicy(backoffSeconds=600, maxBackoffSeconds=599)
    # The default max (3600 s) applies when only the base is given.
    with pytest.raises(ValidationError, match="maxBackoffSeconds must be >= backoffSeconds"):
        RetryPolicy(backoffSeconds=7200)
    assert RetryPolicy(backoffSeconds=600, maxBackoffSeconds=600).max_backoff_seconds == 600


@pytest.mark.parametrize(
    "fields",
    [
        {"backoffSeconds": 0},
        {"backoffSeconds": -1},
        {"backoffSeconds": 86_401, "maxBackoffSeconds": 604_800},
        {"backoffSeconds": 1.5},
        {"backoffSeconds": "soon"},
        {"factor": 0.99},
        {"factor": 0},
        {"factor": -2},
        {"factor": 10.01},
        {"factor": float("nan")},
        {"maxBackoffSeconds": 0},
        {"maxBackoffSeconds": 604_801},
        {"jitterSeconds": -1},
        {"jitterSeconds": 3601},
        {"backoffSeconds": None},
    ],
    ids=str,
)
def test_out_of_range_values_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"backoffSeconds": 1},
        {"backoffSeconds": 86_400, "maxBackoffSeconds": 86_400},
        {"factor": 1.0},
        {"factor": 10.0},
        {"backoffSeconds": 1, "maxBackoffSeconds": 1},
        {"maxBackoffSeconds": 604_800},
        {"jitterSeconds": 0},
        {"jitterSeconds": 3600},
    ],
    ids=str,
)
def test_boundary_values_are_accepted(fields: dict[str, object]) -> None:
    RetryPolicy.model_validate(fields)
