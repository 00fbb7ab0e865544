"""FINRA's publication calendar with real market holidays: the adapter behind ``core.calendar``.

The pure core knows FINRA's rule (a week is first published 21 or 35 days after its Monday, on
the next business day when that is a holiday) but imports no holiday library. This module gives
it NYSE's business days from the maintained ``holidays`` package (its NYSE financial calendar,
which includes one-off closures such as national days of mourning), so no holiday list is
written by hand. Called by the CLI (``--week latest``, backfill, file-week inference), the
doctor, the operator's gap probe, file ingest and the FINRA API client.
"""

from __future__ import annotations

from datetime import date
from functools import cache

import holidays

from market_spine.core.calendar import PublicationCalendar


@cache
def _nyse() -> holidays.HolidayBase:
    # Years are filled in lazily on first look-up; one instance serves the whole process.
    return holidays.financial_holidays("NYSE")


def nyse_business_day(day: date) -> bool:
    """Whether the New York Stock Exchange is open on ``day`` (a weekday that is not a holiday)."""
    return day.weekday() < 5 and day not in _nyse()


def finra_calendar(grace_days: int = 0) -> PublicationCalendar:
    """FINRA's publication calendar on NYSE business days, with ``grace_days`` for expectations."""
    return PublicationCalendar(is_business_day=nyse_business_day, grace_days=grace_days)
