"""Read-side queries over computed FINRA analytics: latest, or as of one capture.

Called by ``spine query venue-share|hhi|captures`` and by the demo (``top_concentrated``). Without
a capture id, rows come from the ``<table>_latest`` views (per partition, the newest capture
only, so a symbol dropped by a restatement is gone); with one, from the base table filtered to
that capture (as-of). Rows are dicts keyed by the tables' column names (``symbol``, ``mpid``,
``volume``, ``share``, ``hhi``, ``venue_count``, ``capture_id``, …) with native Python values
(``date``, ``datetime``, ``float``); the CLI formats them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Engine, Select, Table, TableClause, column, func, select, table

from market_spine.core.partitions import DOMAIN, Tier, canonical_key, finra_partition
from market_spine.core.stages import Stage
from market_spine.db.schema import (
    captures as capture_table,
)
from market_spine.db.schema import (
    core_manifest,
    latest_view_name,
    normalized,
    raw,
    rejects,
    symbol_hhi,
    tier_venue_share,
    venue_volume,
)
from market_spine.errors import NotFound

Row = dict[str, Any]


def latest_view(base: Table) -> TableClause:
    """The ``<table>_latest`` view (created by the migration) with the base table's columns."""
    return table(latest_view_name(base), *(column(c.name, c.type) for c in base.columns))


def _describe(week: date, tier: Tier) -> str:
    return f"week {week.isoformat()} tier {tier.value}"


def check_capture(engine: Engine, week: date, tier: Tier, capture_id: str) -> None:
    """:class:`NotFound` unless ``capture_id`` is a capture of this partition."""
    with engine.connect() as conn:
        found = conn.execute(select(raw.c.week, raw.c.tier).where(raw.c.capture_id == capture_id).limit(1)).first()
    if found is None:
        listing = f"spine query captures --week {week.isoformat()} --tier {tier.value}"
        raise NotFound(f"no capture {capture_id!r}; list captures with: {listing}")
    if found.week != week or found.tier != tier.value:
        raise NotFound(
            f"capture {capture_id!r} is for week {found.week.isoformat()} tier {found.tier}, "
            f"not {_describe(week, tier)}"
        )


def _source(engine: Engine, base: Table, week: date, tier: Tier, capture_id: str | None) -> TableClause:
    if capture_id is None:
        return latest_view(base)
    check_capture(engine, week, tier, capture_id)
    return base


def _partition_query(
    source: TableClause, names: Sequence[str], week: date, tier: Tier, capture_id: str | None
) -> Select[Any]:
    query = select(*(source.c[name] for name in names)).where(source.c.week == week, source.c.tier == tier.value)
    if capture_id is not None:
        query = query.where(source.c.capture_id == capture_id)
    return query


def _rows(engine: Engine, query: Select[Any]) -> list[Row]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


_CAPTURE_FIELDS = ("week", "tier", "capture_id", "captured_at")


def venue_share(
    engine: Engine, week: date, tier: Tier, *, symbol: str | None = None, capture_id: str | None = None
) -> list[Row]:
    """Each venue's volume and share of its symbol's volume; by symbol, then largest venue first."""
    source = _source(engine, venue_volume, week, tier, capture_id)
    names = ("symbol", "mpid", "volume", "trade_count", "share", *_CAPTURE_FIELDS)
    query = _partition_query(source, names, week, tier, capture_id)
    if symbol:
        query = query.where(source.c.symbol == symbol.strip())  # as published: case matters
    return _rows(engine, query.order_by(source.c.symbol, source.c.volume.desc(), source.c.mpid))


def hhi(
    engine: Engine, week: date, tier: Tier, *, symbol: str | None = None, capture_id: str | None = None
) -> list[Row]:
    """Per symbol: total volume, venue count and HHI; by symbol."""
    source = _source(engine, symbol_hhi, week, tier, capture_id)
    names = ("symbol", "volume", "venue_count", "hhi", *_CAPTURE_FIELDS)
    query = _partition_query(source, names, week, tier, capture_id)
    if symbol:
        query = query.where(source.c.symbol == symbol.strip())  # as published: case matters
    return _rows(engine, query.order_by(source.c.symbol))


def tier_share(engine: Engine, week: date, tier: Tier, *, capture_id: str | None = None) -> list[Row]:
    """Each MPID's share of the tier's volume, by rank."""
    source = _source(engine, tier_venue_share, week, tier, capture_id)
    names = ("rank", "mpid", "volume", "share", *_CAPTURE_FIELDS)
    query = _partition_query(source, names, week, tier, capture_id)
    return _rows(engine, query.order_by(source.c.rank))


def top_concentrated(
    engine: Engine,
    week: date,
    tier: Tier,
    limit: int = 10,
    *,
    capture_id: str | None = None,
    min_venues: int = 1,
) -> list[Row]:
    """The most concentrated symbols: highest HHI first, ties by larger volume, then symbol.
    ``min_venues=2`` leaves out single-venue symbols, whose HHI is 1 by definition."""
    source = _source(engine, symbol_hhi, week, tier, capture_id)
    names = ("symbol", "hhi", "venue_count", "volume", *_CAPTURE_FIELDS)
    query = (
        _partition_query(source, names, week, tier, capture_id)
        .where(source.c.hhi.is_not(None), source.c.venue_count >= min_venues)
        .order_by(source.c.hhi.desc(), source.c.volume.desc(), source.c.symbol)
        .limit(limit)
    )
    return _rows(engine, query)


def _counts(engine: Engine, base: Table, week: date, tier: Tier, *conditions: Any) -> dict[str, int]:
    query = (
        select(base.c.capture_id, func.count())
        .where(base.c.week == week, base.c.tier == tier.value, *conditions)
        .group_by(base.c.capture_id)
    )
    with engine.connect() as conn:
        return {capture: count for capture, count in conn.execute(query)}


def captures(engine: Engine, week: date, tier: Tier) -> list[Row]:
    """The partition's captures, newest first: when each was taken, which FINRA publication dates
    (``lastUpdateDate``) its rows carry, which stages it has, row counts, and which one the latest
    views show."""
    with engine.connect() as conn:
        c = capture_table.c
        published = {
            row.capture_id: (row.published_from, row.published_to)
            for row in conn.execute(
                select(c.capture_id, c.published_from, c.published_to).where(c.week == week, c.tier == tier.value)
            )
        }
        found = conn.execute(
            select(raw.c.capture_id, func.min(raw.c.captured_at).label("captured_at"), func.count().label("n"))
            .where(raw.c.week == week, raw.c.tier == tier.value)
            .group_by(raw.c.capture_id)
            .order_by(func.min(raw.c.captured_at).desc(), raw.c.capture_id.desc())
        ).all()
        manifest = conn.execute(
            select(core_manifest.c.stage, core_manifest.c.capture_id).where(
                core_manifest.c.domain == DOMAIN,
                core_manifest.c.partition_key == canonical_key(finra_partition(week, tier)),
            )
        ).all()
    recorded: dict[str, set[str]] = defaultdict(set)
    for stage, capture in manifest:
        recorded[capture].add(stage)
    normalized_rows = _counts(engine, normalized, week, tier)
    rejected_rows = _counts(engine, rejects, week, tier, rejects.c.stage == Stage.NORMALIZED.value)
    venue_rows = _counts(engine, venue_volume, week, tier)
    hhi_rows = _counts(engine, symbol_hhi, week, tier)
    out: list[Row] = []
    for index, (capture, captured_at, raw_count) in enumerate(found):
        stages = [Stage.RAW.value]
        if normalized_rows.get(capture) or rejected_rows.get(capture) or Stage.NORMALIZED in recorded[capture]:
            stages.append(Stage.NORMALIZED.value)
        if venue_rows.get(capture) or Stage.CALC in recorded[capture]:
            stages.append(Stage.CALC.value)
        out.append(
            {
                "capture_id": capture,
                "captured_at": captured_at,
                "week": week,
                "tier": tier.value,
                "published_from": published.get(capture, (None, None))[0],
                "published_to": published.get(capture, (None, None))[1],
                "stages": ",".join(stages),
                "raw_rows": raw_count,
                "normalized_rows": normalized_rows.get(capture, 0),
                "rejected_rows": rejected_rows.get(capture, 0),
                "venue_volume_rows": venue_rows.get(capture, 0),
                "symbol_hhi_rows": hhi_rows.get(capture, 0),
                "latest": index == 0,
            }
        )
    return out
