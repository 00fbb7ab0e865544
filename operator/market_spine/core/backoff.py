"""Retry policy and exponential backoff (SPEC §3.3).

The delay before attempt ``n + 1`` is ``min(backoffSeconds * factor ** (n - 1), maxBackoffSeconds)``
plus an optional jitter. Both the local worker and the operator call :func:`decide_after_failure`,
so "how long to wait" and "when to give up" are decided in this one place.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from market_spine.core.states import Event

DEFAULT_BACKOFF_SECONDS = 300
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_BACKOFF_SECONDS = 3600
DEFAULT_MAX_ATTEMPTS = 3


class RetryPolicy(BaseModel):
    """How failed attempts are retried. Field names follow the CRD (camelCase aliases)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    backoff_seconds: int = Field(DEFAULT_BACKOFF_SECONDS, alias="backoffSeconds", ge=1, le=86_400)
    factor: float = Field(DEFAULT_FACTOR, ge=1.0, le=10.0)
    max_backoff_seconds: int = Field(DEFAULT_MAX_BACKOFF_SECONDS, alias="maxBackoffSeconds", ge=1, le=604_800)
    jitter_seconds: int = Field(0, alias="jitterSeconds", ge=0, le=3600)

    @model_validator(mode="after")
    def _max_not_below_base(self) -> RetryPolicy:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("maxBackoffSeconds must be >= backoffSeconds")
        return self

    def delay_after(self, failed_attempt: int, rng: random.Random | None = None) -> timedelta:
        """Delay to wait after the ``failed_attempt``-th attempt (1-based) failed."""
        if failed_attempt < 1:
            raise ValueError("failed_attempt is 1-based")
        try:
            base = min(self.backoff_seconds * self.factor ** (failed_attempt - 1), float(self.max_backoff_seconds))
        except OverflowError:  # factor ** n past float range: far beyond any cap
            base = float(self.max_backoff_seconds)
        jitter = (rng or random).uniform(0, self.jitter_seconds) if self.jitter_seconds else 0.0
        return timedelta(seconds=base + jitter)


@dataclass(frozen=True)
class FailureDecision:
    """What happens after a failed attempt."""

    event: Event  # FAIL_RETRYABLE or FAIL_FINAL
    next_attempt_at: datetime | None
    delay: timedelta | None


def decide_after_failure(
    *,
    attempts: int,
    max_attempts: int,
    policy: RetryPolicy,
    now: datetime,
    retryable: bool = True,
    rng: random.Random | None = None,
) -> FailureDecision:
    """Decide RETRY_WAIT (with its wake-up time) or FAILED after attempt number ``attempts`` failed."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not retryable or attempts >= max_attempts:
        return FailureDecision(Event.FAIL_FINAL, None, None)
    delay = policy.delay_after(attempts, rng)
    return FailureDecision(Event.FAIL_RETRYABLE, now + delay, delay)
