"""``spine query``: venue share, HHI and captures for a partition, latest or as of a capture."""

from __future__ import annotations

from typing import Annotated

import typer

from market_spine.cli import context
from market_spine.cli.output import Format, emit
from market_spine.services import query as service

app = typer.Typer(help="Query computed analytics and captures.", no_args_is_help=True)

WeekOpt = Annotated[str, typer.Option("--week-ending", help="Week date (YYYY-MM-DD) or 'latest'.")]
TierOpt = Annotated[str, typer.Option("--tier", help="NMS_TIER_1, NMS_TIER_2 or OTC.")]
SymbolOpt = Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")]
CaptureOpt = Annotated[
    str | None, typer.Option("--capture-id", help="As of this capture (default: the latest capture).")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, json or csv.")]


@app.command("venue-share")
def venue_share(
    week_ending: WeekOpt,
    tier: TierOpt,
    symbol: SymbolOpt = None,
    capture_id: CaptureOpt = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Each venue's (MPID's) share of a symbol's weekly volume."""
    p = context.partition(week_ending, tier)
    rows = service.venue_share(context.engine(), p.week_ending, p.tier, symbol=symbol, capture_id=capture_id)
    emit(rows, fmt, title="venue share")


@app.command("hhi")
def hhi(
    week_ending: WeekOpt,
    tier: TierOpt,
    symbol: SymbolOpt = None,
    capture_id: CaptureOpt = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Herfindahl–Hirschman concentration per symbol, with its venue count."""
    p = context.partition(week_ending, tier)
    rows = service.hhi(context.engine(), p.week_ending, p.tier, symbol=symbol, capture_id=capture_id)
    emit(rows, fmt, title="HHI")


@app.command("captures")
def captures(week_ending: WeekOpt, tier: TierOpt, fmt: FormatOpt = Format.TABLE) -> None:
    """The captures of a partition, newest first, with the stages and row counts each one has."""
    p = context.partition(week_ending, tier)
    emit(service.captures(context.engine(), p.week_ending, p.tier), fmt, title="captures")
