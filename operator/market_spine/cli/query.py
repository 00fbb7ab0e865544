"""``spine query``: every table compute and normalize write, latest or as of a capture.

One command per table: ``venue-share`` (venue volume and share per symbol), ``hhi`` (concentration
per symbol), ``tier-share`` (each venue's share of its tier, with its rank), ``rejects`` (rows
normalize refused) and ``captures``. A partition is named by ``--week`` and ``--tier``; without
``--week`` a query reads each tier's newest computed week (and says which on stderr), without
``--tier`` every tier. The fields printed are the service's ``*_FIELDS``, the same in every format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Annotated, Any

import typer

from market_spine.cli import context
from market_spine.cli.output import Format, emit, say
from market_spine.core.calendar import describe_week
from market_spine.core.partitions import Tier
from market_spine.services import query as service

app = typer.Typer(help="Query computed analytics, rejected rows and captures.", no_args_is_help=True)

WeekOpt = context.WeekOpt
WeekEndingOpt = context.WeekEndingOpt
TierOpt = Annotated[
    str | None,
    typer.Option("--tier", metavar="TIER", help="NMS_TIER_1, NMS_TIER_2 or OTC (or T1, T2, OTCE); default every tier."),
]
SymbolOpt = Annotated[
    str | None, typer.Option("--symbol", metavar="SYMBOL", help="Only this symbol, exactly as FINRA publishes it.")
]
CaptureOpt = Annotated[
    str | None,
    typer.Option("--capture-id", metavar="CAPTURE", help="As of this capture (default: the latest capture)."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", metavar="N", min=1, help="At most N rows (after sorting).")]
MinVenuesOpt = Annotated[
    int, typer.Option("--min-venues", metavar="N", min=1, help="Only symbols traded on at least N venues.")
]
FormatOpt = Annotated[Format, typer.Option("--format", metavar="table|json|csv", help="Output format.")]


def _where(week: str | None, week_ending: str | None, tier: str | None) -> tuple[date | None, Tier | None]:
    parsed = context.parse_tier_option(tier) if tier else None
    return context.week_option(week, week_ending, parsed), parsed


def _told(week: date | None, capture_id: str | None = None) -> service.OnRead | None:
    """Without --week (or --capture-id) the query picks each tier's newest week: say (on stderr) which."""
    if week is not None or capture_id is not None:
        return None

    def say_weeks(weeks: list[tuple[date, Tier]]) -> None:
        read = ", ".join(f"{t.value} {describe_week(w)}" for w, t in weeks) or "none computed yet"
        say(f"no --week: each tier's newest week: {read}")

    return say_weeks


@app.command("venue-share")
def venue_share(
    tier: TierOpt = None,
    week: WeekOpt = None,
    week_ending: WeekEndingOpt = None,
    symbol: SymbolOpt = None,
    capture_id: CaptureOpt = None,
    sort: Annotated[
        service.ShareSort,
        typer.Option(
            "--sort", metavar="symbol|share|volume", help="By symbol (largest venue first), or largest first."
        ),
    ] = service.ShareSort.SYMBOL,
    limit: LimitOpt = None,
    min_venues: MinVenuesOpt = 1,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Each venue's (MPID's) volume and share of a symbol's weekly volume, with the symbol's venue count."""
    w, t = _where(week, week_ending, tier)
    rows = service.venue_share(
        context.engine(), w, t, symbol=symbol, capture_id=capture_id, sort=sort, min_venues=min_venues, limit=limit,
        on_read=_told(w, capture_id),
    )  # fmt: skip
    emit(rows, fmt, columns=service.VENUE_SHARE_FIELDS, title="venue-share")


@app.command("hhi")
def hhi(
    tier: TierOpt = None,
    week: WeekOpt = None,
    week_ending: WeekEndingOpt = None,
    symbol: SymbolOpt = None,
    capture_id: CaptureOpt = None,
    sort: Annotated[
        service.HhiSort,
        typer.Option(
            "--sort", metavar="symbol|hhi|volume|venues", help="By symbol, or largest first (most concentrated: hhi)."
        ),
    ] = service.HhiSort.SYMBOL,
    limit: LimitOpt = None,
    min_venues: MinVenuesOpt = 1,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Herfindahl–Hirschman concentration per symbol, with its volume and venue count.

    A symbol traded on one venue has HHI 1: --min-venues 2 leaves those out."""
    w, t = _where(week, week_ending, tier)
    rows = service.hhi(
        context.engine(), w, t, symbol=symbol, capture_id=capture_id, sort=sort, min_venues=min_venues, limit=limit,
        on_read=_told(w, capture_id),
    )  # fmt: skip
    emit(rows, fmt, columns=service.HHI_FIELDS, title="hhi")


def _partition_command(name: str, fetch: Callable[..., list[dict[str, Any]]], fields: Sequence[str]) -> None:
    """Register ``spine query NAME``: one table's rows for a partition (``fetch``'s docstring is
    the help), with --tier, --week, --capture-id, --limit and --format."""

    def command(
        tier: TierOpt = None,
        week: WeekOpt = None,
        week_ending: WeekEndingOpt = None,
        capture_id: CaptureOpt = None,
        limit: LimitOpt = None,
        fmt: FormatOpt = Format.TABLE,
    ) -> None:
        w, t = _where(week, week_ending, tier)
        rows = fetch(context.engine(), w, t, capture_id=capture_id, limit=limit, on_read=_told(w, capture_id))
        emit(rows, fmt, columns=fields, title=name)

    command.__doc__ = fetch.__doc__
    app.command(name)(command)


_partition_command("tier-share", service.tier_share, service.TIER_SHARE_FIELDS)
_partition_command("rejects", service.rejected, service.REJECT_FIELDS)


@app.command("captures")
def captures(
    tier: TierOpt = None, week: WeekOpt = None, week_ending: WeekEndingOpt = None, fmt: FormatOpt = Format.TABLE
) -> None:
    """The captures of a partition, newest first: FINRA publication dates, stages and row counts."""
    w, t = _where(week, week_ending, tier)
    rows = service.captures(context.engine(), w, t, on_read=_told(w))
    emit(rows, fmt, columns=service.CAPTURE_FIELDS, title="captures")
