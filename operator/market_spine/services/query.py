"""Read-side queries over computed FINRA analytics: latest, or as of one capture.

Called by ``spine query venue-share|hhi|tier-share|rejects|captures`` and by the demo. Without a
capture id, rows come from the ``<table>_latest`` views (per partition, the newest capture only,
so a symbol dropped by a restatement is gone); with one, from the base table filtered to that
capture (as-of). A query names its partitions by week and tier; with no week it reads each tier's
newest computed week, with no tier every tier. Rows are dicts with exactly the fields of the
query's ``*_FIELDS`` tuple, with native Python values (``date``, ``datetime``, ``float``); the CLI
formats them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, Select, Table, TableClause, and_, column, func, or_, select, table

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
Partition = tuple[date, Tier]


def latest_view(base: Table) -> TableClause:
    """The ``<table>_latest`` view (created by the migration) with the base table's columns."""
    return table(latest_view_name(base), *(column(c.name, c.type) for c in base.columns))


_CAPTURE_FIELDS = ("week", "tier", "capture_id", "captured_at")

# The fields of each query, in output order: ``spine query`` prints exactly these in every format
# (and a CSV header of them even when no row matches).
VENUE_SHARE_FIELDS = ("symbol", "mpid", "volume", "trade_count", "share", "venue_count", *_CAPTURE_FIELDS)
HHI_FIELDS = ("symbol", "volume", "venue_count", "hhi", *_CAPTURE_FIELDS)
TIER_SHARE_FIELDS = ("rank", "mpid", "volume", "share", *_CAPTURE_FIELDS)
REJECT_FIELDS = ("line_number", "stage", "reason", "record", *_CAPTURE_FIELDS)
CAPTURE_FIELDS = (
    "capture_id", "captured_at", "week", "tier", "published_from", "published_to", "stages", "raw_rows",
    "normalized_rows", "rejected_rows", "venue_volume_rows", "symbol_hhi_rows", "latest",
)  # fmt: skip


class HhiSort(StrEnum):
    """Orders of ``spine query hhi``: by symbol, or largest first (ties by volume, then symbol)."""

    SYMBOL = "symbol"
    HHI = "hhi"
    VOLUME = "volume"
    VENUES = "venues"


class ShareSort(StrEnum):
    """Orders of ``spine query venue-share``: by symbol (largest venue first), or largest first."""

    SYMBOL = "symbol"
    SHARE = "share"
    VOLUME = "volume"


def newest_weeks(engine: Engine, base: Table, tiers: Sequence[Tier]) -> list[Partition]:
    """Each tier's newest week that ``base`` holds rows for (latest captures), in tier order."""
    view = latest_view(base)
    query = select(view.c.tier, func.max(view.c.week)).where(view.c.tier.in_([t.value for t in tiers]))
    with engine.connect() as conn:
        found = {Tier(tier): week for tier, week in conn.execute(query.group_by(view.c.tier))}
    return [(found[tier], tier) for tier in tiers if tier in found]


# Told which partitions a query read, once it knows them (``spine query`` says so when it chose
# them: no --week).
OnRead = Callable[[list[Partition]], None]


def partitions(
    engine: Engine,
    base: Table,
    week: date | None,
    tier: Tier | None,
    capture_id: str | None = None,
    on_read: OnRead | None = None,
) -> list[Partition]:
    """The partitions a query reads: the one named; with no week, each tier's newest computed
    week in ``base``; with no tier, every tier. A capture id names its own partition (which must
    be the week and tier given, if any). ``on_read`` is told the result."""
    tiers = [tier] if tier is not None else list(Tier)
    if capture_id is not None:
        found = [capture_partition(engine, capture_id, week, tier)]
    elif week is None:
        found = newest_weeks(engine, base, tiers)
    else:
        found = [(week, t) for t in tiers]
    if on_read is not None:
        on_read(found)
    return found


def capture_partition(engine: Engine, capture_id: str, week: date | None, tier: Tier | None) -> Partition:
    """The partition of ``capture_id``; :class:`NotFound` if there is no such capture, or if it
    belongs to another week or tier than the ones given."""
    with engine.connect() as conn:
        found = conn.execute(select(raw.c.week, raw.c.tier).where(raw.c.capture_id == capture_id).limit(1)).first()
    if found is None:
        raise NotFound(f"no capture {capture_id!r}; list a partition's captures with: spine query captures")
    if (week is not None and found.week != week) or (tier is not None and found.tier != tier.value):
        asked = " ".join(part for part in (week and f"week {week}", tier and f"tier {tier.value}") if part)
        raise NotFound(f"capture {capture_id!r} is for week {found.week.isoformat()} tier {found.tier}, not {asked}")
    return found.week, Tier(found.tier)


def _select(source: Any, names: Sequence[str], where: Sequence[Partition], capture_id: str | None) -> Select[Any]:
    """``names`` from ``source`` for the partitions ``where`` (and the one capture, if given)."""
    match = or_(*(and_(source.c.week == w, source.c.tier == t.value) for w, t in where))
    query = select(*(source.c[name] for name in names)).where(match)
    if capture_id is not None:
        query = query.where(source.c.capture_id == capture_id)
    return query


def _source(base: Table, capture_id: str | None) -> Any:
    """The latest view, or the base table for an as-of query."""
    return base if capture_id is not None else latest_view(base)


def _rows(engine: Engine, query: Select[Any]) -> list[Row]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _read(
    engine: Engine,
    source: Any,
    fields: Sequence[str],
    where: Sequence[Partition],
    capture_id: str | None,
    *,
    order: Sequence[Any],
    limit: int | None,
    symbol: str | None = None,
    min_venues: int = 1,
) -> list[Row]:
    """``fields`` of ``source`` for the partitions ``where``, filtered by symbol (as published:
    case matters) and venue count, in ``order``, at most ``limit`` rows."""
    query = _select(source, fields, where, capture_id)
    if symbol:
        query = query.where(source.c.symbol == symbol.strip())
    if min_venues > 1:
        query = query.where(source.c.venue_count >= min_venues)
    return _rows(engine, query.order_by(*order).limit(limit))


def venue_share(
    engine: Engine,
    week: date | None,
    tier: Tier | None,
    *,
    symbol: str | None = None,
    capture_id: str | None = None,
    sort: ShareSort = ShareSort.SYMBOL,
    min_venues: int = 1,
    limit: int | None = None,
    on_read: OnRead | None = None,
) -> list[Row]:
    """Each venue's volume and share of its symbol's volume, with the symbol's venue count."""
    where = partitions(engine, venue_volume, week, tier, capture_id, on_read)
    if not where:
        return []
    base = _source(venue_volume, capture_id)
    # Each symbol's venue count in its capture beside each venue's row (as symbol_hhi counts it),
    # computed over the chosen partitions only.
    venues = func.count().over(partition_by=(base.c.capture_id, base.c.symbol)).label("venue_count")
    names = [name for name in VENUE_SHARE_FIELDS if name != "venue_count"]
    source = _select(base, names, where, capture_id).add_columns(venues).subquery("venue_volume")
    c = source.c
    order = {
        ShareSort.SYMBOL: (c.symbol, c.volume.desc(), c.mpid),
        ShareSort.SHARE: (c.share.desc().nulls_last(), c.volume.desc(), c.symbol, c.mpid),
        ShareSort.VOLUME: (c.volume.desc(), c.symbol, c.mpid),
    }[sort]
    return _read(
        engine, source, VENUE_SHARE_FIELDS, where, capture_id,
        order=(*order, c.tier, c.week), limit=limit, symbol=symbol, min_venues=min_venues,
    )  # fmt: skip


def hhi(
    engine: Engine,
    week: date | None,
    tier: Tier | None,
    *,
    symbol: str | None = None,
    capture_id: str | None = None,
    sort: HhiSort = HhiSort.SYMBOL,
    min_venues: int = 1,
    limit: int | None = None,
    on_read: OnRead | None = None,
) -> list[Row]:
    """Per symbol: total volume, venue count and HHI. ``sort=HhiSort.HHI`` with ``min_venues=2``
    is the demo's "most concentrated symbols" (a single venue's HHI is 1 by definition)."""
    where = partitions(engine, symbol_hhi, week, tier, capture_id, on_read)
    if not where:
        return []
    source = _source(symbol_hhi, capture_id)
    c = source.c
    order = {
        HhiSort.SYMBOL: (c.symbol,),
        HhiSort.HHI: (c.hhi.desc().nulls_last(), c.volume.desc(), c.symbol),
        HhiSort.VOLUME: (c.volume.desc(), c.symbol),
        HhiSort.VENUES: (c.venue_count.desc(), c.hhi.desc().nulls_last(), c.symbol),
    }[sort]
    return _read(
        engine, source, HHI_FIELDS, where, capture_id,
        order=(*order, c.tier, c.week), limit=limit, symbol=symbol, min_venues=min_venues,
    )  # fmt: skip


def tier_share(
    engine: Engine,
    week: date | None,
    tier: Tier | None,
    *,
    capture_id: str | None = None,
    limit: int | None = None,
    on_read: OnRead | None = None,
) -> list[Row]:
    """Each MPID's share of its tier's weekly volume, by rank (per tier, then rank)."""
    where = partitions(engine, tier_venue_share, week, tier, capture_id, on_read)
    source = _source(tier_venue_share, capture_id)
    c = source.c
    order = (c.tier, c.week, c.rank)
    return _read(engine, source, TIER_SHARE_FIELDS, where, capture_id, order=order, limit=limit) if where else []


def rejected(
    engine: Engine,
    week: date | None,
    tier: Tier | None,
    *,
    capture_id: str | None = None,
    limit: int | None = None,
    on_read: OnRead | None = None,
) -> list[Row]:
    """The rows normalize refused, with the reason and the row as received, by line number."""
    where = partitions(engine, normalized, week, tier, capture_id, on_read)  # weeks with no rejects count too
    source = _source(rejects, capture_id)
    c = source.c
    order = (c.tier, c.week, c.stage, c.line_number)
    return _read(engine, source, REJECT_FIELDS, where, capture_id, order=order, limit=limit) if where else []


def computed_weeks(engine: Engine, domain: str = DOMAIN) -> dict[Tier, tuple[int, date, date]]:
    """Per tier that has any: how many weeks have been computed (a CALC manifest row), the oldest
    and the newest. What the doctor's table says the database holds, whatever window it checks."""
    m = core_manifest.c
    query = (
        select(m.tier, func.count(), func.min(m.week), func.max(m.week))
        .where(m.domain == domain, m.stage == Stage.CALC.value)
        .group_by(m.tier)
    )
    with engine.connect() as conn:
        return {Tier(tier): (count, oldest, newest) for tier, count, oldest, newest in conn.execute(query)}


def _counts(engine: Engine, base: Table, week: date, tier: Tier, *conditions: Any) -> dict[str, int]:
    query = (
        select(base.c.capture_id, func.count())
        .where(base.c.week == week, base.c.tier == tier.value, *conditions)
        .group_by(base.c.capture_id)
    )
    with engine.connect() as conn:
        return {capture: count for capture, count in conn.execute(query)}


def captures(engine: Engine, week: date | None, tier: Tier | None, on_read: OnRead | None = None) -> list[Row]:
    """The captures of the partitions named (see :func:`partitions`; with no week, each tier's
    newest ingested week), newest first within each partition."""
    where = partitions(engine, raw, week, tier, on_read=on_read)
    return [row for w, t in where for row in partition_captures(engine, w, t)]


def partition_captures(engine: Engine, week: date, tier: Tier) -> list[Row]:
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
