"""The weekly calendar: which weeks exist and which are published yet.

FINRA stamps each weekly file with ``lastUpdateDate`` (a Monday in the real data), and that date
is the partition's ``week_ending``. A week is *expected* for a tier once ``week_ending + lag`` has
passed, where the lag is configurable per tier. Called by the doctor and by ``spine work backfill``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, timedelta

from market_spine.core.partitions import Tier

MONDAY = 0


def last_week_ending_on_or_before(day: date, weekday: int = MONDAY) -> date:
    """The latest date ``<= day`` that falls on ``weekday`` (0 = Monday … 6 = Sunday)."""
    _check_weekday(weekday)
    return day - timedelta(days=(day.weekday() - weekday) % 7)


def _check_weekday(weekday: int) -> None:
    if not 0 <= weekday <= 6:
        raise ValueError("weekday must be 0 (Monday) … 6 (Sunday)")


def is_week_ending(day: date, weekday: int = MONDAY) -> bool:
    _check_weekday(weekday)
    return day.weekday() == weekday


def weeks_back(as_of: date, count: int, weekday: int = MONDAY) -> list[date]:
    """The ``count`` week-ending dates up to ``as_of``, oldest first."""
    if count < 1:
        raise ValueError("count must be at least 1")
    newest = last_week_ending_on_or_before(as_of, weekday)
    return [newest - timedelta(weeks=i) for i in range(count - 1, -1, -1)]


def week_range(start: date, end: date, weekday: int = MONDAY) -> Iterator[date]:
    """Every week-ending date in ``[start, end]``, oldest first."""
    day = last_week_ending_on_or_before(end, weekday)
    weeks: list[date] = []
    while day >= start:
        weeks.append(day)
        day -= timedelta(weeks=1)
    return iter(reversed(weeks))


def expected_partitions(
    as_of: date,
    weeks: int,
    tiers: tuple[Tier, ...] = tuple(Tier),
    *,
    weekday: int = MONDAY,
    publication_lag_days: Mapping[Tier, int] | None = None,
) -> list[tuple[date, Tier]]:
    """(week, tier) pairs the platform should hold: the window of ``weeks`` weeks up to ``as_of``,
    minus weeks whose publication lag has not passed yet for that tier."""
    lags = publication_lag_days or {}
    out: list[tuple[date, Tier]] = []
    for week in weeks_back(as_of, weeks, weekday):
        for tier in tiers:
            if week + timedelta(days=lags.get(tier, 0)) <= as_of:
                out.append((week, tier))
    return out
