"""What every command needs: settings, a database engine, a clock, and argument parsing helpers.

A partition is named on the command line by ``--tier`` and a trading week: ``--week DATE`` or the
seed's ``--week-ending DATE`` (either, not both), where DATE is any day of the week or ``latest``
(the newest week FINRA has published for the tier, today). Both resolve to the week's Monday,
FINRA's ``weekStartDate``; when that is not the date typed, the command says which week it used.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated

import typer
from sqlalchemy import Engine

from market_spine.cli.output import say
from market_spine.config import Settings, load_settings
from market_spine.core.calendar import PublicationCalendar, describe_week, week_of
from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.core.stages import INGEST
from market_spine.core.workitem import FinraPartition
from market_spine.errors import InputFileError, UsageError
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.registry import get_pipeline
from market_spine.services.database import open_engine
from market_spine.services.runs import infer_file_week

_WEEK_HELP = "The trading week: any date in it (YYYY-MM-DD), or 'latest' (newest week FINRA has published)."
_TIER_HELP = "NMS_TIER_1, NMS_TIER_2 or OTC (or FINRA's T1, T2, OTCE)."
WeekOpt = Annotated[str | None, typer.Option("--week", metavar="DATE", help=_WEEK_HELP)]
WeekEndingOpt = Annotated[
    str | None,
    typer.Option("--week-ending", metavar="DATE", help="Same as --week (the seed's name; e.g. the week's Friday)."),
]
TierOpt = Annotated[str, typer.Option("--tier", metavar="TIER", help=_TIER_HELP)]


def utcnow() -> datetime:
    return datetime.now(UTC)


@cache
def settings() -> Settings:
    return load_settings()


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


def calendar() -> PublicationCalendar:
    """FINRA's publication calendar on NYSE business days, with ``SPINE_PUBLICATION_GRACE_DAYS``."""
    return finra_calendar(settings().publication_grace_days)


def parse_week(value: str, option: str, tier: Tier | None) -> date:
    """The trading week (its Monday) named by ``value``: any date in the week, or ``latest``, the
    newest week FINRA has published for ``tier`` as of today (UTC; each tier has its own, so
    ``latest`` needs a tier). Says on stderr which week a date other than its Monday, or
    ``latest``, resolved to."""
    if value.strip().lower() == "latest":
        if tier is None:
            raise UsageError(f"{option} latest needs --tier: each tier has its own newest published week")
        today = utcnow().date()
        week = calendar().newest_published_week(tier, today)
        published = calendar().first_publication(week, tier)
        say(f"{option} latest: {tier.value} week {describe_week(week)}, published by FINRA on {published.isoformat()}")
        return week
    day = parse_date(value, option)
    week = week_of(day)
    if week != day:
        say(f"{option} {day.isoformat()}: trading week {describe_week(week)}")
    return week


def week_option(week: str | None, week_ending: str | None, tier: Tier | None) -> date | None:
    """The week named by ``--week`` or ``--week-ending`` (one of them at most), or ``None``."""
    if week is not None and week_ending is not None:
        raise UsageError("give --week or --week-ending, not both (they name the same trading week)")
    if week is not None:
        return parse_week(week, "--week", tier)
    if week_ending is not None:
        return parse_week(week_ending, "--week-ending", tier)
    return None


def parse_tier_option(value: str) -> Tier:
    try:
        return parse_tier(value)
    except UnknownTier as exc:
        raise UsageError(str(exc)) from None


def partition(week: str | None, week_ending: str | None, tier: str) -> FinraPartition:
    """The partition named by ``--week``/``--week-ending`` (required) and ``--tier``."""
    parsed = parse_tier_option(tier)
    found = week_option(week, week_ending, parsed)
    if found is None:
        raise UsageError("name the trading week with --week DATE (any day of the week) or --week-ending DATE")
    return FinraPartition(week=found, tier=parsed)


def ingest_partition(
    pipeline: str, week: str | None, week_ending: str | None, tier: str, file: str | None
) -> FinraPartition:
    """Like :func:`partition`, but an ingest of a weekly file may leave the week out: it is then
    read off FINRA's publication calendar from the file's ``lastUpdateDate``, and said on stderr."""
    parsed = parse_tier_option(tier)
    found = week_option(week, week_ending, parsed)
    if found is None:
        if pipeline != INGEST or not file:
            raise UsageError("name the trading week with --week DATE (any day of the week) or --week-ending DATE")
        try:
            found, stamped = infer_file_week(file, parsed, calendar())
        except InputFileError as exc:  # e.g. a path that exists only in the Job's pod
            message = f"name the trading week with --week DATE: cannot read it off the file here ({exc})"
            raise UsageError(message) from None
        first = calendar().first_publication(found, parsed)
        say(
            f"no --week given: {file} carries lastUpdateDate {stamped.isoformat()}; the newest {parsed.value} week "
            f"FINRA had published by then is {describe_week(found)}, first published on {first.isoformat()}; "
            f"using --week {found.isoformat()}"
        )
    return FinraPartition(week=found, tier=parsed)


def check_pipeline(name: str) -> str:
    get_pipeline(name)
    return name
