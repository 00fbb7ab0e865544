"""``finra.otc_transparency.compute_week``: venue analytics of one normalized capture (stage CALC).

Called through the registry by ``services.runs``. Reads the normalized rows of the capture named
by ``ctx.params["capture_id"]``, else of the partition's latest RAW capture (which must have been
normalized: computing an older capture instead would silently report stale numbers). One
set-based statement computes and writes all three tables inside PostgreSQL, so no row crosses to
Python and memory stays flat whatever the week's size:

- ``venue_volume``: volume and trades per (symbol, MPID), with the venue's share of the symbol;
- ``symbol_hhi``: per symbol, total volume, venue count and HHI (sum of squared shares);
- ``tier_venue_share``: per MPID, its share of the tier's volume and its rank (1 = largest).

The formulas are :mod:`market_spine.core.analytics`'s, written in SQL (its tests hold the two
equal). Volumes are summed as NUMERIC: each normalized row fits a BIGINT, their sums need not.
A symbol with zero total volume has NULL shares and HHI. The stage records its lineage: the
normalize execution that wrote the rows it read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, case, cast, func, insert, literal, select

from market_spine.core.stages import COMPUTE, Stage
from market_spine.db.schema import normalized, symbol_hhi, tier_venue_share, venue_volume
from market_spine.pipelines.manifest import Replaced, open_capture, set_work_mem, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

_CAPTURE_COLUMNS = ("capture_id", "captured_at", "execution_id", "week", "tier")
VENUE_VOLUME_COLUMNS = (*_CAPTURE_COLUMNS, "symbol", "mpid", "volume", "trade_count", "share")
SYMBOL_HHI_COLUMNS = (*_CAPTURE_COLUMNS, "symbol", "volume", "venue_count", "hhi")
TIER_VENUE_SHARE_COLUMNS = (*_CAPTURE_COLUMNS, "mpid", "volume", "share", "rank")


def _ratio(part: ColumnElement[Any], whole: ColumnElement[Any]) -> ColumnElement[float]:
    """part / whole as a double, NULL when whole is 0 (no share of nothing)."""
    return case((whole == 0, None), else_=cast(part, Float) / cast(whole, Float))


@register(COMPUTE, Stage.CALC, "Compute venue volume and share, symbol HHI, and tier venue share with rank")
def compute_week(ctx: RunContext) -> StageResult:
    with ctx.engine.begin() as conn:
        replaced: list[Replaced] = [(table, {}) for table in (venue_volume, symbol_hhi, tier_venue_share)]
        capture = open_capture(conn, ctx.week, ctx.tier, ctx.params.get("capture_id"), replaced, reads=Stage.NORMALIZED)
        set_work_mem(conn)
        cid = capture.capture_id
        constants = (
            literal(cid),
            literal(capture.captured_at),
            literal(ctx.execution_id),
            literal(ctx.week),
            literal(ctx.tier.value),
        )
        n = normalized.c
        venues = (
            select(
                n.symbol,
                n.mpid,
                func.sum(n.share_quantity).label("volume"),
                func.sum(n.trade_count).label("trade_count"),
            )
            .where(n.week == ctx.week, n.tier == ctx.tier.value, n.capture_id == cid)
            .group_by(n.symbol, n.mpid)
            .cte("venues")
        )
        v = venues.c
        symbol_total = func.sum(v.volume).over(partition_by=v.symbol)
        shares = select(v.symbol, v.mpid, v.volume, v.trade_count, _ratio(v.volume, symbol_total).label("share")).cte(
            "shares"
        )
        s = shares.c
        venue_rows = (
            insert(venue_volume)
            .from_select(VENUE_VOLUME_COLUMNS, select(*constants, s.symbol, s.mpid, s.volume, s.trade_count, s.share))
            .returning(literal(1))
            .cte("venue_rows")
        )
        total = func.sum(s.volume)
        hhi = case((total == 0, None), else_=func.sum(s.share * s.share))
        hhi_rows = (
            insert(symbol_hhi)
            .from_select(
                SYMBOL_HHI_COLUMNS,
                select(*constants, s.symbol, total, cast(func.count(), Integer), hhi).group_by(s.symbol),
            )
            .returning(literal(1))
            .cte("hhi_rows")
        )
        per_mpid = select(v.mpid, func.sum(v.volume).label("volume")).group_by(v.mpid).subquery("per_mpid")
        m = per_mpid.c
        rank = func.row_number().over(order_by=(m.volume.desc(), m.mpid))
        tier_rows = (
            insert(tier_venue_share)
            .from_select(
                TIER_VENUE_SHARE_COLUMNS,
                select(*constants, m.mpid, m.volume, _ratio(m.volume, func.sum(m.volume).over()), rank),
            )
            .returning(literal(1))
            .cte("tier_rows")
        )
        count, _, _ = conn.execute(
            select(
                *(
                    select(func.count()).select_from(rows).scalar_subquery()
                    for rows in (venue_rows, hhi_rows, tier_rows)
                )
            )
        ).one()
        upsert_manifest(
            conn,
            stage=Stage.CALC,
            week=ctx.week,
            tier=ctx.tier,
            row_count=count,
            capture_id=cid,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
            upstream=capture.upstream,
        )
    if ctx.progress is not None:
        ctx.progress(count)
    return StageResult(Stage.CALC, cid, count)
