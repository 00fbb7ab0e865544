"""What every command needs: settings, a database engine, a clock, and argument parsing helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Engine

from market_spine.config import Settings, load_settings
from market_spine.core.calendar import last_week_ending_on_or_before
from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.core.workitem import FinraPartition
from market_spine.errors import UsageError
from market_spine.pipelines.registry import get_pipeline
from market_spine.services.database import open_engine


def utcnow() -> datetime:
    return datetime.now(UTC)


@cache
def settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:  # pydantic's ValidationError: name the variable, not a traceback
        errors: list[dict[str, Any]] = list(getattr(exc, "errors", list)())
        if errors:
            first = errors[0]
            name = "SPINE_" + "_".join(str(p) for p in first.get("loc", ())[:1]).upper()
            raise UsageError(f"{name} is invalid: {first.get('msg')}") from None
        raise UsageError(f"invalid SPINE_* setting: {exc}") from None


_engine: Engine | None = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = open_engine(settings())
    return _engine


def reset() -> None:
    """Forget cached settings and engine (tests run many commands in one process)."""
    global _engine
    if _engine is not None:
        _engine.dispose()
    _engine = None
    settings.cache_clear()


def parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be a date as YYYY-MM-DD, not {value!r}") from None


def parse_week(value: str) -> date:
    """A week-ending date, or ``latest``: the most recent week-ending day (Monday unless
    ``SPINE_WEEK_ENDING_WEEKDAY`` says otherwise) on or before today (UTC)."""
    if value.strip().lower() == "latest":
        return last_week_ending_on_or_before(utcnow().date(), settings().week_ending_weekday)
    return parse_date(value, "--week-ending")


def parse_tier_option(value: str) -> Tier:
    try:
        return parse_tier(value)
    except UnknownTier as exc:
        raise UsageError(str(exc)) from None


def partition(week_ending: str, tier: str) -> FinraPartition:
    return FinraPartition(week_ending=parse_week(week_ending), tier=parse_tier_option(tier))


def check_pipeline(name: str) -> str:
    get_pipeline(name)
    return name
