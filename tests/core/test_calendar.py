"""FINRA's weekly calendar in the pure core: trading weeks and publication days (SPEC §4, §5).

The core takes business days as a function; these tests give it hand-made calendars so that every
rule is checked on exact dates without a holiday library (``tests/finra/test_schedule.py`` checks
the real NYSE calendar).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from market_spine.core.calendar import (
    PUBLICATION_DELAY_DAYS,
    NotAMonday,
    PublicationCalendar,
    check_week,
    describe_week,
    week_of,
    week_range,
    weekdays_only,
    weeks_between,
)
from market_spine.core.partitions import Tier

T1, T2, OTC = Tier.NMS_TIER_1, Tier.NMS_TIER_2, Tier.OTC
WEEK = date(2025, 11, 10)  # the trading week of the real OTC file published on 2025-12-15


def closed_on(*days: date) -> PublicationCalendar:
    """Weekdays, except ``days`` (holidays)."""
    holidays = frozenset(days)
    return PublicationCalendar(is_business_day=lambda day: weekdays_only(day) and day not in holidays)


# --- weeks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", range(7))
def test_every_day_of_a_week_names_its_monday(offset: int) -> None:
    assert week_of(WEEK + timedelta(days=offset)) == WEEK
    assert week_of(WEEK - timedelta(days=1)) == date(2025, 11, 3)  # the Sunday before is the previous week


def test_week_range_and_description() -> None:
    assert week_range(date(2025, 11, 14)) == (date(2025, 11, 10), date(2025, 11, 14))
    assert describe_week(WEEK) == "2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14)"


def test_a_week_must_be_a_monday_and_the_error_names_the_right_one() -> None:
    assert check_week(WEEK) == WEEK
    with pytest.raises(NotAMonday) as error:
        check_week(date(2025, 11, 14))
    assert str(error.value) == (
        "week must be the Monday that starts the trading week (FINRA's weekStartDate): "
        "2025-11-14 is a Friday; use 2025-11-10"
    )


def test_weeks_between_covers_every_week_touching_the_range() -> None:
    assert weeks_between(date(2025, 11, 12), date(2025, 11, 20)) == [date(2025, 11, 10), date(2025, 11, 17)]
    assert weeks_between(date(2025, 12, 29), date(2026, 1, 5)) == [date(2025, 12, 29), date(2026, 1, 5)]
    assert weeks_between(WEEK, WEEK) == [WEEK]
    assert weeks_between(date(2025, 11, 20), date(2025, 11, 12)) == []


# --- first publication ------------------------------------------------------------------------------


def test_delays_are_finras() -> None:
    assert PUBLICATION_DELAY_DAYS == {T1: 21, T2: 35, OTC: 35}


def test_first_publication_is_the_delay_after_the_monday() -> None:
    calendar = PublicationCalendar()
    assert calendar.first_publication(WEEK, OTC) == date(2025, 12, 15)
    assert calendar.first_publication(WEEK, T2) == date(2025, 12, 15)
    assert calendar.first_publication(WEEK, T1) == date(2025, 12, 1)
    # Any day of the week names the week.
    assert calendar.first_publication(date(2025, 11, 14), OTC) == date(2025, 12, 15)


def test_a_holiday_monday_moves_publication_to_the_tuesday() -> None:
    mlk = date(2026, 1, 19)
    calendar = closed_on(mlk)
    assert calendar.first_publication(date(2025, 12, 29), T1) == date(2026, 1, 20)
    assert calendar.first_publication(date(2025, 12, 15), OTC) == date(2026, 1, 20)
    assert calendar.first_publication(date(2025, 12, 22), T1) == date(2026, 1, 12)  # unaffected


def test_several_closed_days_move_to_the_next_open_one() -> None:
    calendar = closed_on(date(2026, 1, 19), date(2026, 1, 20))
    assert calendar.first_publication(date(2025, 12, 29), T1) == date(2026, 1, 21)


def test_a_calendar_with_no_business_day_is_an_error_not_a_hang() -> None:
    calendar = PublicationCalendar(is_business_day=lambda _day: False)
    with pytest.raises(ValueError, match="no business day within 10 days of 2025-12-15"):
        calendar.first_publication(WEEK, OTC)


def test_grace_moves_the_due_day_only() -> None:
    calendar = PublicationCalendar(grace_days=2)
    assert calendar.first_publication(WEEK, OTC) == date(2025, 12, 15)
    assert calendar.due(WEEK, OTC) == date(2025, 12, 17)
    with pytest.raises(ValueError, match="grace_days"):
        PublicationCalendar(grace_days=-1)


def test_file_name_carries_the_first_publication_day() -> None:
    assert PublicationCalendar().file_name(WEEK, OTC) == "finra_otc_weekly_otc_20251215.csv"
    assert PublicationCalendar().file_name(WEEK, T1) == "finra_otc_weekly_nms_tier_1_20251201.csv"


# --- newest published week ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (date(2025, 12, 14), date(2025, 11, 3)),  # the Sunday before: 2025-11-10 is not out yet
        (date(2025, 12, 15), date(2025, 11, 10)),  # publication day
        (date(2025, 12, 19), date(2025, 11, 10)),
        (date(2025, 12, 21), date(2025, 11, 10)),
        (date(2025, 12, 22), date(2025, 11, 17)),
    ],
)
def test_newest_published_otc_week(as_of: date, expected: date) -> None:
    assert PublicationCalendar().newest_published_week(OTC, as_of) == expected


def test_newest_published_week_waits_for_the_tuesday_after_a_holiday() -> None:
    calendar = closed_on(date(2026, 1, 19))
    assert calendar.newest_published_week(T1, date(2026, 1, 19)) == date(2025, 12, 22)
    assert calendar.newest_published_week(T1, date(2026, 1, 20)) == date(2025, 12, 29)


def test_newest_published_week_per_tier_on_one_day() -> None:
    calendar = PublicationCalendar()
    day = date(2025, 12, 15)
    assert {tier: calendar.newest_published_week(tier, day) for tier in Tier} == {
        T1: date(2025, 11, 24),
        T2: date(2025, 11, 10),
        OTC: date(2025, 11, 10),
    }


def test_with_grace_the_newest_due_week_is_a_day_later() -> None:
    calendar = PublicationCalendar(grace_days=1)
    assert calendar.newest_published_week(OTC, date(2025, 12, 15)) == date(2025, 11, 10)
    assert calendar.newest_published_week(OTC, date(2025, 12, 15), with_grace=True) == date(2025, 11, 3)
    assert calendar.newest_published_week(OTC, date(2025, 12, 16), with_grace=True) == date(2025, 11, 10)


# --- expected partitions --------------------------------------------------------------------------------


def test_expected_partitions_are_each_tiers_newest_due_weeks() -> None:
    calendar = PublicationCalendar(grace_days=1)
    assert calendar.expected_partitions(date(2025, 12, 16), 2) == [
        (date(2025, 11, 3), T2),
        (date(2025, 11, 3), OTC),
        (date(2025, 11, 10), T2),
        (date(2025, 11, 10), OTC),
        (date(2025, 11, 17), T1),
        (date(2025, 11, 24), T1),
    ]


def test_expected_partitions_for_a_tier_subset() -> None:
    calendar = PublicationCalendar()
    assert calendar.expected_partitions(date(2025, 12, 22), 3, [OTC]) == [
        (date(2025, 11, 3), OTC),
        (date(2025, 11, 10), OTC),
        (date(2025, 11, 17), OTC),
    ]
    assert calendar.expected_partitions(date(2025, 12, 22), 3, []) == []


def test_expected_partitions_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="count must be at least 1"):
        PublicationCalendar().expected_partitions(date(2025, 12, 22), 0)
