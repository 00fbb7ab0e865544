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

from sqlalchemy import delete, select

from market_spine.core.analytics import symbol_concentration, tier_venue_shares, venue_shares, venue_volumes
from market_spine.core.stages import COMPUTE, Stage
from market_spine.db.schema import normalized, symbol_hhi, tier_venue_share, venue_volume
from market_spine.errors import NotFound
from market_spine.pipelines.copy import copy_rows
from market_spine.pipelines.manifest import is_normalized, lock_capture, resolve_raw_capture, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

_CAPTURE_COLUMNS = ("capture_id", "captured_at", "execution_id", "week_ending", "tier")
VENUE_VOLUME_COLUMNS = (*_CAPTURE_COLUMNS, "symbol", "mpid", "volume", "trade_count", "share")
SYMBOL_HHI_COLUMNS = (*_CAPTURE_COLUMNS, "symbol", "volume", "venue_count", "hhi")
TIER_VENUE_SHARE_COLUMNS = (*_CAPTURE_COLUMNS, "mpid", "volume", "share", "rank")


def _float(value: float | None) -> str | None:
    # repr() is the shortest text that parses back to the same double: no precision is lost.
    return None if value is None else repr(value)


@register(COMPUTE, Stage.CALC, "Compute venue volume and share, symbol HHI, and tier venue share with rank")
def compute_week(ctx: RunContext) -> StageResult:
    tier_text = ctx.tier.value
    with ctx.engine.begin() as conn:
        capture = resolve_raw_capture(conn, ctx.week_ending, ctx.tier, ctx.params.get("capture_id"))
        cid = capture.capture_id
        lock_capture(conn, cid)
        if not is_normalized(conn, cid):
            raise NotFound(f"capture {cid} has not been normalized; run normalize first")
        prefix = (cid, capture.captured_at.isoformat(), ctx.execution_id, ctx.week_ending.isoformat(), tier_text)
        rows = conn.execute(
            select(normalized.c.symbol, normalized.c.mpid, normalized.c.share_quantity, normalized.c.trade_count).where(
                normalized.c.week_ending == ctx.week_ending,
                normalized.c.tier == tier_text,
                normalized.c.capture_id == cid,
            )
        )
        volumes = venue_volumes(rows)
        shares = venue_shares(volumes)
        trades = {(v.symbol, v.mpid): v.trade_count for v in volumes}
        venue_rows = [
            (*prefix, s.symbol, s.mpid, str(s.volume), str(trades[(s.symbol, s.mpid)]), _float(s.share)) for s in shares
        ]
        hhi_rows = [
            (*prefix, c.symbol, str(c.total_volume), str(c.venue_count), _float(c.hhi))
            for c in symbol_concentration(shares)
        ]
        tier_rows = [(*prefix, t.mpid, str(t.volume), _float(t.share), str(t.rank)) for t in tier_venue_shares(volumes)]
        for table in (venue_volume, symbol_hhi, tier_venue_share):
            conn.execute(
                delete(table).where(
                    table.c.week_ending == ctx.week_ending, table.c.tier == tier_text, table.c.capture_id == cid
                )
            )
        count = copy_rows(conn, venue_volume, VENUE_VOLUME_COLUMNS, venue_rows, progress=ctx.progress)
        copy_rows(conn, symbol_hhi, SYMBOL_HHI_COLUMNS, hhi_rows)
        copy_rows(conn, tier_venue_share, TIER_VENUE_SHARE_COLUMNS, tier_rows)
        upsert_manifest(
            conn,
            stage=Stage.CALC,
            week_ending=ctx.week_ending,
            tier=ctx.tier,
            row_count=count,
            capture_id=cid,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.CALC, cid, count)
