"""The weekly calendar: week endings, windows and publication lag (SPEC §4, §5)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from itertools import pairwise

import pytest

from market_spine.core.calendar import (
    MONDAY,
    expected_partitions,
    is_week_ending,
    last_week_ending_on_or_before,
    week_range,
    weeks_back,
)
from market_spine.core.partitions import Tier

MON = date(2025, 12, 15)  # FINRA's lastUpdateDate for the week, a Monday
T1, T2, OTC = Tier.NMS_TIER_1, Tier.NMS_TIER_2, Tier.OTC


def test_monday_is_zero() -> None:
    assert MONDAY == 0
    assert MON.weekday() == MONDAY


# --- last_week_ending_on_or_before --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 12, 15), date(2025, 12, 15)),  # Monday itself
        (date(2025, 12, 16), date(2025, 12, 15)),
        (date(2025, 12, 17), date(2025, 12, 15)),
        (date(2025, 12, 18), date(2025, 12, 15)),
        (date(2025, 12, 19), date(2025, 12, 15)),
        (date(2025, 12, 20), date(2025, 12, 15)),
        (date(2025, 12, 21), date(2025, 12, 15)),  # Sunday
        (date(2025, 12, 14), date(2025, 12, 8)),  # the Sunday before
        (date(2026, 1, 1), date(2025, 12, 29)),  # across a year boundary
        (date(2024, 3, 1), date(2024, 2, 26)),  # across a leap February
    ],
)
def test_last_monday_on_or_before(day: date, expected: date) -> None:
    assert last_week_ending_on_or_before(day) == expected
    assert last_week_ending_on_or_before(day, MONDAY) == expected


@pytest.mark.parametrize("weekday", range(7))
def test_last_week_ending_for_every_weekday(weekday: int) -> None:
    start = date(2025, 12, 1)
    for offset in range(28):
        day = start + timedelta(days=offset)
        result = last_week_ending_on_or_before(day, weekday)
        assert result.weekday() == weekday
        assert result <= day
        assert (day - result).days < 7


def test_last_week_ending_friday_example() -> None:
    assert last_week_ending_on_or_before(date(2025, 12, 19), 4) == date(2025, 12, 19)
    assert last_week_ending_on_or_before(date(2025, 12, 18), 4) == date(2025, 12, 12)
    assert last_week_ending_on_or_before(date(2025, 12, 21), 6) == date(2025, 12, 21)


@pytest.mark.parametrize("weekday", [-1, 7, 8, 100])
def test_invalid_weekday_is_rejected(weekday: int) -> None:
    with pytest.raises(ValueError, match=r"weekday must be 0 \(Monday\)"):
        last_week_ending_on_or_before(MON, weekday)
    with pytest.raises(ValueError, match="weekday"):
        weeks_back(MON, 3, weekday)
    with pytest.raises(ValueError, match="weekday"):
        week_range(MON - timedelta(weeks=2), MON, weekday)
    with pytest.raises(ValueError, match="weekday"):
        expected_partitions(MON, 3, weekday=weekday)


# --- is_week_ending -------------------------------------------------------------------------------------


def test_is_week_ending_mondays_only_by_default() -> None:
    for offset in range(14):
        day = MON + timedelta(days=offset)
        assert is_week_ending(day) is (day.weekday() == 0)
    assert is_week_ending(date(2025, 12, 8))
    assert not is_week_ending(date(2025, 12, 12))


def test_is_week_ending_with_another_weekday() -> None:
    assert is_week_ending(date(2025, 12, 19), 4)
    assert not is_week_ending(MON, 4)


@pytest.mark.parametrize("weekday", [-1, 7])
def test_is_week_ending_rejects_invalid_weekday(weekday: int) -> None:
    with pytest.raises(ValueError, match="weekday"):
        is_week_ending(MON, weekday)


# --- weeks_back -------------------------------------------------------------------------------------------


def test_weeks_back_oldest_first() -> None:
    assert weeks_back(date(2025, 12, 17), 3) == [date(2025, 12, 1), date(2025, 12, 8), date(2025, 12, 15)]


def test_weeks_back_includes_as_of_when_it_is_a_week_ending() -> None:
    assert weeks_back(MON, 2) == [date(2025, 12, 8), MON]
    assert weeks_back(MON - timedelta(days=1), 2) == [date(2025, 12, 1), date(2025, 12, 8)]


def test_weeks_back_across_year_boundary() -> None:
    assert weeks_back(date(2026, 1, 5), 3) == [date(2025, 12, 22), date(2025, 12, 29), date(2026, 1, 5)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 13, 52, 260])
def test_weeks_back_count_and_spacing(count: int) -> None:
    weeks = weeks_back(date(2025, 12, 17), count)
    assert len(weeks) == count
    assert len(set(weeks)) == count
    assert weeks[-1] == MON
    assert all(w.weekday() == MONDAY for w in weeks)
    assert all(b - a == timedelta(weeks=1) for a, b in pairwise(weeks))
    assert weeks == sorted(weeks)


def test_weeks_back_one() -> None:
    assert weeks_back(date(2025, 12, 21), 1) == [MON]


@pytest.mark.parametrize("count", [0, -1])
def test_weeks_back_count_must_be_positive(count: int) -> None:
    with pytest.raises(ValueError, match="count must be at least 1"):
        weeks_back(MON, count)


def test_weeks_back_other_weekday() -> None:
    assert weeks_back(date(2025, 12, 17), 2, weekday=4) == [date(2025, 12, 5), date(2025, 12, 12)]


# --- week_range ------------------------------------------------------------------------------------------


def test_week_range_inclusive_bounds() -> None:
    assert list(week_range(date(2025, 12, 1), date(2025, 12, 15))) == [
        date(2025, 12, 1),
        date(2025, 12, 8),
        date(2025, 12, 15),
    ]


def test_week_range_mid_week_bounds() -> None:
    # Tuesday 2 Dec → Sunday 21 Dec: the Monday 1 Dec is before start, the Monday 22 Dec after end.
    assert list(week_range(date(2025, 12, 2), date(2025, 12, 21))) == [date(2025, 12, 8), MON]


def test_week_range_single_and_empty() -> None:
    assert list(week_range(MON, MON)) == [MON]
    assert list(week_range(date(2025, 12, 16), date(2025, 12, 21))) == []  # no Monday inside
    assert list(week_range(date(2025, 12, 22), MON)) == []  # start after end


def test_week_range_returns_an_iterator() -> None:
    result = week_range(date(2025, 12, 1), MON)
    assert isinstance(result, Iterator)
    assert next(result) == date(2025, 12, 1)


def test_week_range_other_weekday() -> None:
    assert list(week_range(date(2025, 12, 1), date(2025, 12, 19), weekday=4)) == [
        date(2025, 12, 5),
        date(2025, 12, 12),
        date(2025, 12, 19),
    ]


@pytest.mark.parametrize("count", [1, 3, 10, 60])
def test_week_range_agrees_with_weeks_back(count: int) -> None:
    as_of = date(2025, 12, 18)
    weeks = weeks_back(as_of, count)
    assert list(week_range(weeks[0], as_of)) == weeks


# --- expected_partitions ------------------------------------------------------------------------------


def test_expected_partitions_default_tiers_week_major() -> None:
    assert expected_partitions(date(2025, 12, 17), 3) == [
        (date(2025, 12, 1), T1),
        (date(2025, 12, 1), T2),
        (date(2025, 12, 1), OTC),
        (date(2025, 12, 8), T1),
        (date(2025, 12, 8), T2),
        (date(2025, 12, 8), OTC),
        (MON, T1),
        (MON, T2),
        (MON, OTC),
    ]


def test_expected_partitions_tier_subset_and_order() -> None:
    assert expected_partitions(date(2025, 12, 17), 2, (OTC, T1)) == [
        (date(2025, 12, 8), OTC),
        (date(2025, 12, 8), T1),
        (MON, OTC),
        (MON, T1),
    ]


def test_expected_partitions_per_tier_publication_lag() -> None:
    as_of = date(2025, 12, 17)  # Wednesday: the Monday week is 2 days old
    result = expected_partitions(as_of, 3, publication_lag_days={OTC: 3, T2: 2})
    assert result == [
        (date(2025, 12, 1), T1),
        (date(2025, 12, 1), T2),
        (date(2025, 12, 1), OTC),
        (date(2025, 12, 8), T1),
        (date(2025, 12, 8), T2),
        (date(2025, 12, 8), OTC),
        (MON, T1),  # no lag configured: 0 days
        (MON, T2),  # lag 2: 15 Dec + 2 = 17 Dec <= as_of, published
        # OTC: lag 3: 15 Dec + 3 = 18 Dec > as_of, not published yet
    ]


@pytest.mark.parametrize(
    ("lag", "weeks"),
    [
        (0, [date(2025, 12, 1), date(2025, 12, 8), MON]),
        (2, [date(2025, 12, 1), date(2025, 12, 8), MON]),
        (3, [date(2025, 12, 1), date(2025, 12, 8)]),
        (9, [date(2025, 12, 1), date(2025, 12, 8)]),
        (10, [date(2025, 12, 1)]),
        (16, [date(2025, 12, 1)]),
        (17, []),
    ],
)
def test_expected_partitions_lag_boundaries(lag: int, weeks: list[date]) -> None:
    # The window does not slide back to make up for unpublished weeks: it stays `weeks` weeks up to as_of.
    result = expected_partitions(date(2025, 12, 17), 3, (OTC,), publication_lag_days={OTC: lag})
    assert result == [(w, OTC) for w in weeks]


def test_expected_partitions_other_weekday() -> None:
    assert expected_partitions(date(2025, 12, 20), 2, (T1,), weekday=4) == [
        (date(2025, 12, 12), T1),
        (date(2025, 12, 19), T1),
    ]


def test_expected_partitions_count_validation() -> None:
    with pytest.raises(ValueError, match="count must be at least 1"):
        expected_partitions(MON, 0)


def test_expected_partitions_no_tiers() -> None:
    assert expected_partitions(MON, 3, ()) == []
