"""Stage bookkeeping shared by ingest, normalize and compute: the manifest upsert, capture locks,
and which capture a stage reads.

Called by the three FINRA stages inside their transaction. ``core_manifest`` has one row per
(domain, partition, stage) saying which capture that stage last produced and how many rows; the
doctor reads it to find missing partitions and incomplete chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, and_, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from market_spine.core.partitions import DOMAIN, Tier, canonical_key, finra_partition
from market_spine.core.stages import Stage
from market_spine.db.schema import core_manifest, normalized, raw, rejects
from market_spine.errors import NotFound


def partition_key(week_ending: date, tier: Tier) -> str:
    return canonical_key(finra_partition(week_ending, tier))


def upsert_manifest(
    conn: Connection,
    *,
    stage: Stage,
    week_ending: date,
    tier: Tier,
    row_count: int,
    capture_id: str,
    execution_id: str | None,
    updated_at: datetime,
) -> None:
    """Record that ``stage`` of the partition now holds ``capture_id`` with ``row_count`` rows."""
    values = {
        "domain": DOMAIN,
        "partition_key": partition_key(week_ending, tier),
        "stage": stage.value,
        "week_ending": week_ending,
        "tier": tier.value,
        "row_count": row_count,
        "capture_id": capture_id,
        "execution_id": execution_id,
        "updated_at": updated_at,
    }
    statement = pg_insert(core_manifest).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[core_manifest.c.domain, core_manifest.c.partition_key, core_manifest.c.stage],
        set_={
            name: statement.excluded[name]
            for name in ("week_ending", "tier", "row_count", "capture_id", "execution_id", "updated_at")
        },
    )
    conn.execute(statement)


def lock_capture(conn: Connection, capture_id: str) -> None:
    """Serialize stages writing the same capture until this transaction ends.

    Kubernetes may start a Job's pod twice, and two workers may replay one capture at once: both
    would delete nothing the other had not committed yet and then both insert, doubling the rows.
    A transaction-level advisory lock on the capture makes the second wait, then replace."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(capture_id, literal(0)))))


@dataclass(frozen=True)
class Capture:
    capture_id: str
    captured_at: datetime


def _describe(week_ending: date, tier: Tier) -> str:
    return f"week {week_ending.isoformat()} tier {tier.value}"


def resolve_raw_capture(conn: Connection, week_ending: date, tier: Tier, capture_id: str | None) -> Capture:
    """The capture a downstream stage reads: ``capture_id`` if given, else the partition's latest
    RAW capture. Captures are identified by their raw rows, so a restatement that was ingested but
    not yet normalized is the latest capture, and compute says so instead of silently using an
    older one."""
    partition = and_(raw.c.week_ending == week_ending, raw.c.tier == tier.value)
    query = select(raw.c.capture_id, raw.c.captured_at).where(partition)
    if capture_id is not None:
        found = conn.execute(query.where(raw.c.capture_id == capture_id).limit(1)).first()
        if found is None:
            raise NotFound(f"no RAW capture {capture_id!r} for {_describe(week_ending, tier)}")
    else:
        found = conn.execute(query.order_by(raw.c.captured_at.desc(), raw.c.capture_id.desc()).limit(1)).first()
        if found is None:
            raise NotFound(f"no RAW capture for {_describe(week_ending, tier)}; run ingest first")
    return Capture(found.capture_id, found.captured_at)


def is_normalized(conn: Connection, capture_id: str) -> bool:
    """Whether normalize ran for the capture: it left normalized rows or NORMALIZED rejects
    (a week whose every row was rejected is normalized too, with zero rows)."""
    done = exists().where(normalized.c.capture_id == capture_id)
    rejected = exists().where(rejects.c.capture_id == capture_id, rejects.c.stage == Stage.NORMALIZED.value)
    return bool(conn.execute(select(done | rejected)).scalar())
