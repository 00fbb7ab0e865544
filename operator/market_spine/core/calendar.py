"""FINRA's weekly calendar: trading weeks, and the day FINRA first publishes each one.

A trading week is named by its Monday, FINRA's ``weekStartDate``; any date inside the week names
the same week (:func:`week_of`). FINRA first publishes a week's ATS data a fixed delay after that
Monday: 21 days for NMS Tier 1, 35 days for NMS Tier 2 and OTC equities, moved to the next business
day when that day is not one (a market holiday Monday: the Tuesday). A row's ``lastUpdateDate`` is
such a publication day (or a later correction day), never the week itself.

Which days are business days is not known here: the pure core imports no holiday library, so a
:class:`PublicationCalendar` is given an ``is_business_day`` function. ``finra.schedule`` builds
the production one from the ``holidays`` package's NYSE calendar; :func:`weekdays_only` (no
holidays) serves examples and tests that need none.

Called by the doctor and the operator's gap probe (expected partitions), ``spine work backfill``
(weeks in a range), ``--week latest`` (the newest published week), file ingest (which week a
publication date fits) and the FINRA API client (whether a week should be published yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from market_spine.core.partitions import Tier, weekly_file_name

MONDAY = 0
WEEK = timedelta(weeks=1)
# Days from a week's Monday to its first publication, before the business-day adjustment.
PUBLICATION_DELAY_DAYS: dict[Tier, int] = {Tier.NMS_TIER_1: 21, Tier.NMS_TIER_2: 35, Tier.OTC: 35}
# No market closes this long: a calendar that claims so is broken, and looping on would hang.
_MAX_CLOSED_DAYS = 10
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

BusinessDay = Callable[[date], bool]


def weekdays_only(day: date) -> bool:
    """A business-day calendar with no holidays: Monday to Friday."""
    return day.weekday() < 5


def week_of(day: date) -> date:
    """The trading week ``day`` falls in, named by its Monday."""
    return day - timedelta(days=day.weekday())


def week_range(week: date) -> tuple[date, date]:
    """(Monday, Friday) of a trading week."""
    monday = week_of(week)
    return monday, monday + timedelta(days=4)


def describe_week(week: date) -> str:
    """``2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14)``: the week's key and its trading days."""
    monday, friday = week_range(week)
    return f"{monday.isoformat()} (Mon {monday.isoformat()} – Fri {friday.isoformat()})"


class NotAMonday(ValueError):
    """A partition's week that is not the Monday FINRA names the week by."""

    def __init__(self, day: date) -> None:
        super().__init__(
            f"week must be the Monday that starts the trading week (FINRA's weekStartDate): "
            f"{day.isoformat()} is a {_DAY_NAMES[day.weekday()]}; use {week_of(day).isoformat()}"
        )


def check_week(day: date) -> date:
    """``day`` if it is a Monday, else :class:`NotAMonday` naming the Monday of its week."""
    if day.weekday() != MONDAY:
        raise NotAMonday(day)
    return day


def weeks_between(start: date, end: date) -> list[date]:
    """The trading weeks that have a day in ``[start, end]``, oldest first."""
    first, last = week_of(start), week_of(end)
    return [first + WEEK * i for i in range((last - first).days // 7 + 1)] if first <= last else []


@dataclass(frozen=True)
class PublicationCalendar:
    """FINRA's publication schedule over one business-day calendar.

    ``grace_days`` is how long after a week's first publication the platform is expected to hold
    it (the doctor's "expected" and the gap probe); "published" itself has no grace."""

    is_business_day: BusinessDay = weekdays_only
    grace_days: int = 0

    def __post_init__(self) -> None:
        if self.grace_days < 0:
            raise ValueError("grace_days must not be negative")

    def next_business_day(self, day: date) -> date:
        """``day`` if it is a business day, else the next one."""
        for offset in range(_MAX_CLOSED_DAYS + 1):
            candidate = day + timedelta(days=offset)
            if self.is_business_day(candidate):
                return candidate
        raise ValueError(f"no business day within {_MAX_CLOSED_DAYS} days of {day.isoformat()}: check the calendar")

    def first_publication(self, week: date, tier: Tier) -> date:
        """The day FINRA first publishes ``week`` (any date in it) for ``tier``."""
        return self.next_business_day(week_of(week) + timedelta(days=PUBLICATION_DELAY_DAYS[tier]))

    def file_name(self, week: date, tier: Tier) -> str:
        """The week's file under FINRA's download name, which carries its first publication day."""
        return weekly_file_name(self.first_publication(week, tier), tier)

    def due(self, week: date, tier: Tier) -> date:
        """The day from which the platform should hold the week: first publication + grace."""
        return self.first_publication(week, tier) + timedelta(days=self.grace_days)

    def is_published(self, week: date, tier: Tier, as_of: date) -> bool:
        return self.first_publication(week, tier) <= as_of

    def newest_published_week(self, tier: Tier, as_of: date, *, with_grace: bool = False) -> date:
        """The newest week FINRA has published for ``tier`` by ``as_of`` (with the grace, the newest
        the platform should hold). Also the week a publication day fits: for a file whose rows
        carry ``lastUpdateDate`` D, the newest week published by D is the one FINRA put out on D."""
        ready = self.due if with_grace else self.first_publication
        week = week_of(as_of - timedelta(days=PUBLICATION_DELAY_DAYS[tier]))
        while ready(week, tier) > as_of:
            week -= WEEK
        return week

    def published_weeks(self, tier: Tier, as_of: date, count: int, *, with_grace: bool = True) -> list[date]:
        """The ``count`` newest weeks of ``tier`` published (with the grace, due) by ``as_of``, oldest first."""
        if count < 1:
            raise ValueError("count must be at least 1")
        newest = self.newest_published_week(tier, as_of, with_grace=with_grace)
        return [newest - WEEK * i for i in range(count - 1, -1, -1)]

    def expected_partitions(
        self, as_of: date, weeks: int, tiers: Iterable[Tier] = tuple(Tier)
    ) -> list[tuple[date, Tier]]:
        """(week, tier) pairs the platform should hold as of ``as_of``: for each tier, its ``weeks``
        newest weeks whose first publication plus the grace has passed. Sorted by week, then tier."""
        return sorted((week, tier) for tier in tiers for week in self.published_weeks(tier, as_of, weeks))
