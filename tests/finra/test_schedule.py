"""FINRA's publication calendar on NYSE's real holidays (``finra.schedule``, from the ``holidays``
package), checked against publication days FINRA is known to have used (``../shared/notes/finra.md``).
"""

from __future__ import annotations

from datetime import date

import pytest

from market_spine.core.partitions import Tier
from market_spine.finra.schedule import finra_calendar, nyse_business_day

T1, T2, OTC = Tier.NMS_TIER_1, Tier.NMS_TIER_2, Tier.OTC


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        (date(2026, 1, 19), False),  # Martin Luther King Jr. Day
        (date(2026, 1, 20), True),
        (date(2025, 12, 25), False),  # Christmas
        (date(2025, 1, 9), False),  # national day of mourning (President Carter): a one-off closure
        (date(2025, 11, 15), False),  # a Saturday
        (date(2025, 12, 15), True),
    ],
)
def test_nyse_business_days(day: date, open_: bool) -> None:
    assert nyse_business_day(day) is open_


@pytest.mark.parametrize(
    ("week", "tier", "published"),
    [
        (date(2025, 11, 10), OTC, date(2025, 12, 15)),  # the real file finra_otc_weekly_otc_20251215.csv
        (date(2025, 11, 17), OTC, date(2025, 12, 22)),  # the real file finra_otc_weekly_otc_20251222.csv
        (date(2026, 9, 7), T1, date(2026, 9, 28)),  # seen in FINRA's recorded API answers
        (date(2025, 12, 29), T1, date(2026, 1, 20)),  # +21 is MLK Day: the Tuesday
        (date(2025, 12, 15), OTC, date(2026, 1, 20)),  # +35 is MLK Day: the Tuesday
        (date(2025, 12, 15), T2, date(2026, 1, 20)),
        (date(2022, 11, 21), OTC, date(2022, 12, 27)),  # +35 is the observed Christmas holiday
        (date(2023, 4, 24), OTC, date(2023, 5, 30)),  # +35 is Memorial Day
        (date(2023, 11, 27), OTC, date(2024, 1, 2)),  # +35 is New Year's Day
    ],
)
def test_first_publication_on_nyse_days(week: date, tier: Tier, published: date) -> None:
    assert finra_calendar().first_publication(week, tier) == published


def test_expected_partitions_over_a_holiday_follow_finras_schedule() -> None:
    """The doctor's expectation (grace 1 day) around MLK Day 2026: the Tier 1 week of 2025-12-29
    and the Tier 2 / OTC week of 2025-12-15 are published on Tuesday 2026-01-20, so they are
    expected from Wednesday 2026-01-21, not from the Tuesday."""
    calendar = finra_calendar(grace_days=1)
    on_tuesday = calendar.expected_partitions(date(2026, 1, 20), 2)
    assert on_tuesday == [
        (date(2025, 12, 1), T2),
        (date(2025, 12, 1), OTC),
        (date(2025, 12, 8), T2),
        (date(2025, 12, 8), OTC),
        (date(2025, 12, 15), T1),
        (date(2025, 12, 22), T1),
    ]
    on_wednesday = calendar.expected_partitions(date(2026, 1, 21), 2)
    assert on_wednesday == [
        (date(2025, 12, 8), T2),
        (date(2025, 12, 8), OTC),
        (date(2025, 12, 15), T2),
        (date(2025, 12, 15), OTC),
        (date(2025, 12, 22), T1),
        (date(2025, 12, 29), T1),
    ]
