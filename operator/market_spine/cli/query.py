"""``spine query``: venue share, HHI and captures for a partition, latest or as of a capture."""

from __future__ import annotations

from typing import Annotated

import typer

from market_spine.cli import context
from market_spine.cli.output import Format, emit
from market_spine.services import query as service

app = typer.Typer(help="Query computed analytics and captures.", no_args_is_help=True)

WeekOpt = context.WeekOpt
WeekEndingOpt = context.WeekEndingOpt
TierOpt = context.TierOpt
SymbolOpt = Annotated[str | None, typer.Option("--symbol", help="Only this symbol, exactly as FINRA publishes it.")]
CaptureOpt = Annotated[
    str | None, typer.Option("--capture-id", help="As of this capture (default: the latest capture).")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, json or csv.")]


@app.command("venue-share")
def venue_share(
    tier: TierOpt,
    week: WeekOpt = None,
    week_ending: WeekEndingOpt = None,
    symbol: SymbolOpt = None,
    capture_id: CaptureOpt = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Each venue's (MPID's) share of a symbol's weekly volume."""
    p = context.partition(week, week_ending, tier)
    rows = service.venue_share(context.engine(), p.week, p.tier, symbol=symbol, capture_id=capture_id)
    emit(rows, fmt, title="venue share")


@app.command("hhi")
def hhi(
    tier: TierOpt,
    week: WeekOpt = None,
    week_ending: WeekEndingOpt = None,
    symbol: SymbolOpt = None,
    capture_id: CaptureOpt = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Herfindahl–Hirschman concentration per symbol, with its venue count."""
    p = context.partition(week, week_ending, tier)
    rows = service.hhi(context.engine(), p.week, p.tier, symbol=symbol, capture_id=capture_id)
    emit(rows, fmt, title="HHI")


@app.command("captures")
def captures(
    tier: TierOpt, week: WeekOpt = None, week_ending: WeekEndingOpt = None, fmt: FormatOpt = Format.TABLE
) -> None:
    """The captures of a partition, newest first: FINRA publication dates, stages and row counts."""
    p = context.partition(week, week_ending, tier)
    emit(service.captures(context.engine(), p.week, p.tier), fmt, title="captures")
