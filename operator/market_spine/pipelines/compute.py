"""``finra.otc_transparency.compute_week``: venue analytics of one normalized capture (stage CALC).

Called through the registry by ``services.runs``. Reads the normalized rows of the capture named
by ``ctx.params["capture_id"]``, else of the partition's latest RAW capture (which must have been
normalized: computing an older capture instead would silently report stale numbers). The
formulas are the pure core's (:mod:`market_spine.core.analytics`); this module only moves rows:

- ``venue_volume``: volume and trades per (symbol, MPID), with the venue's share of the symbol;
- ``symbol_hhi``: per symbol, total volume, venue count and HHI (sum of squared shares);
- ``tier_venue_share``: per MPID, its share of the tier's volume and its rank (1 = largest).

A symbol with zero total volume has NULL shares and HHI (see the analytics module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TypeVar

from market_spine.core.analytics import (
    SymbolConcentration,
    TierVenueShare,
    VenueShare,
    symbol_concentration,
    tier_venue_shares,
    venue_shares,
    venue_volumes,
)
from market_spine.core.stages import COMPUTE, Stage
from market_spine.db.schema import normalized, symbol_hhi, tier_venue_share, venue_volume
from market_spine.pipelines.copy import any_needs_escape, copy_text, escape, fetch_all
from market_spine.pipelines.manifest import Replaced, open_capture, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

_CAPTURE_COLUMNS = ("capture_id", "captured_at", "execution_id", "week", "tier")
VENUE_VOLUME_COLUMNS = (*_CAPTURE_COLUMNS, "symbol", "mpid", "volume", "trade_count", "share")
SYMBOL_HHI_COLUMNS = (*_CAPTURE_COLUMNS, "symbol", "volume", "venue_count", "hhi")
TIER_VENUE_SHARE_COLUMNS = (*_CAPTURE_COLUMNS, "mpid", "volume", "share", "rank")
READ_COLUMNS = ("symbol", "mpid", "share_quantity", "trade_count")
CHUNK_ROWS = 250  # rows per COPY chunk: PostgreSQL stores one while the next is formatted
NULL = "\\N"
_KEY = itemgetter(0, 1)  # (symbol, mpid) of a VenueVolume or VenueShare
_TRADES = attrgetter("trade_count")
T = TypeVar("T")


def _float(value: float | None) -> str:
    # repr() is the shortest text that parses back to the same double: no precision is lost.
    return NULL if value is None else repr(value)


def _chunks(items: Sequence[T], line: Callable[[T], str], chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, str]]:
    """``items`` as COPY lines, formatted a chunk at a time: PostgreSQL stores one chunk while
    the next is formatted."""
    for start in range(0, len(items), chunk_rows):
        part = items[start : start + chunk_rows]
        yield len(part), "".join([line(item) for item in part])


@register(COMPUTE, Stage.CALC, "Compute venue volume and share, symbol HHI, and tier venue share with rank")
def compute_week(ctx: RunContext) -> StageResult:
    tier_text = ctx.tier.value
    with ctx.engine.begin() as conn:
        replaced: list[Replaced] = [(table, {}) for table in (venue_volume, symbol_hhi, tier_venue_share)]
        capture = open_capture(
            conn, ctx.week, ctx.tier, ctx.params.get("capture_id"), replaced, require_normalized=True
        )
        cid = capture.capture_id
        constants = (cid, capture.captured_at.isoformat(), ctx.execution_id, ctx.week.isoformat(), tier_text)
        prefix = "".join(f"{escape(value)}\t" for value in constants)
        partition = {"week": ctx.week, "tier": tier_text, "capture_id": cid}
        rows = fetch_all(conn, normalized, READ_COLUMNS, partition)
        volumes = venue_volumes(rows)
        shares = venue_shares(volumes)
        trades = dict(zip(map(_KEY, volumes), map(_TRADES, volumes), strict=True))
        # Symbols and MPIDs are written as they are unless one of them needs escaping (never in
        # FINRA's files): checked once over all of them rather than value by value.
        text: Callable[[str], str] = escape if any_needs_escape(chain.from_iterable(map(_KEY, volumes))) else str

        def venue_line(s: VenueShare) -> str:
            count = trades[s.symbol, s.mpid]
            return f"{prefix}{text(s.symbol)}\t{text(s.mpid)}\t{s.volume}\t{count}\t{_float(s.share)}\n"

        def hhi_line(c: SymbolConcentration) -> str:
            return f"{prefix}{text(c.symbol)}\t{c.total_volume}\t{c.venue_count}\t{_float(c.hhi)}\n"

        def tier_line(t: TierVenueShare) -> str:
            return f"{prefix}{text(t.mpid)}\t{t.volume}\t{_float(t.share)}\t{t.rank}\n"

        count = copy_text(conn, venue_volume, VENUE_VOLUME_COLUMNS, _chunks(shares, venue_line), progress=ctx.progress)
        copy_text(conn, symbol_hhi, SYMBOL_HHI_COLUMNS, _chunks(symbol_concentration(shares), hhi_line))
        copy_text(conn, tier_venue_share, TIER_VENUE_SHARE_COLUMNS, _chunks(tier_venue_shares(volumes), tier_line))
        upsert_manifest(
            conn,
            stage=Stage.CALC,
            week=ctx.week,
            tier=ctx.tier,
            row_count=count,
            capture_id=cid,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.CALC, cid, count)
