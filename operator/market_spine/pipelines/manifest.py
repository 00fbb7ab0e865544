"""Stage bookkeeping shared by ingest, normalize and compute: the manifest upsert, capture locks,
and which capture a stage reads.

Called by the three FINRA stages inside their transaction. ``core_manifest`` has one row per
(domain, partition, stage) saying which capture that stage last produced and how many rows; the
doctor reads it to find missing partitions and incomplete chains.

A stage's fixed work (lock the capture, find it, check its input, delete what an earlier run of the
stage wrote for it) is a handful of tiny statements; :func:`replace_capture` and
:func:`open_capture` send them in one round trip (psycopg's pipeline mode) instead of one each.
The statements are those SQLAlchemy would send, written with ``psycopg.sql`` so they skip its
compilation: at ~5,000 rows a stage, fixed costs are a tenth of the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg import Pipeline, sql
from sqlalchemy import Connection, Table, and_, select

from market_spine.core.partitions import DOMAIN, Tier, canonical_key, finra_partition
from market_spine.core.stages import Stage
from market_spine.db.schema import core_manifest, normalized, raw, rejects
from market_spine.errors import NotFound
from market_spine.pipelines.copy import delete_statement, driver_connection, where_clause


def partition_key(week: date, tier: Tier) -> str:
    return canonical_key(finra_partition(week, tier))


_MANIFEST_COLUMNS = tuple(column.name for column in core_manifest.columns)
_MANIFEST_KEY = tuple(column.name for column in core_manifest.primary_key.columns)
_UPSERT = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
    sql.Identifier(core_manifest.name),
    sql.SQL(", ").join(map(sql.Identifier, _MANIFEST_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder(name) for name in _MANIFEST_COLUMNS),
    sql.SQL(", ").join(map(sql.Identifier, _MANIFEST_KEY)),
    sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
        for name in _MANIFEST_COLUMNS
        if name not in _MANIFEST_KEY
    ),
)
# The lock key of a capture: the same expression whichever stage takes it.
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({}, 0))")
# Whether a capture has raw rows. Ordered as the raw index is, so the lookup walks the index
# rather than scanning the table when the planner thinks matches are everywhere.
_FIND = sql.SQL("SELECT captured_at FROM {} WHERE {} ORDER BY captured_at DESC, capture_id DESC LIMIT 1")


def upsert_manifest(
    conn: Connection,
    *,
    stage: Stage,
    week: date,
    tier: Tier,
    row_count: int,
    capture_id: str,
    execution_id: str | None,
    updated_at: datetime,
) -> None:
    """Record that ``stage`` of the partition now holds ``capture_id`` with ``row_count`` rows."""
    values = {
        "domain": DOMAIN,
        "partition_key": partition_key(week, tier),
        "stage": stage.value,
        "week": week,
        "tier": tier.value,
        "row_count": row_count,
        "capture_id": capture_id,
        "execution_id": execution_id,
        "updated_at": updated_at,
    }
    driver_connection(conn).execute(_UPSERT, values)


def lock_capture(conn: Connection, capture_id: str) -> None:
    """Serialize stages writing the same capture until this transaction ends.

    Kubernetes may start a Job's pod twice, and two workers may replay one capture at once: both
    would delete nothing the other had not committed yet and then both insert, doubling the rows.
    A transaction-level advisory lock on the capture makes the second wait, then replace."""
    driver_connection(conn).execute(_LOCK.format(sql.Literal(capture_id)))


@dataclass(frozen=True)
class Capture:
    capture_id: str
    captured_at: datetime


def _describe(week: date, tier: Tier) -> str:
    return f"week {week.isoformat()} tier {tier.value}"


def resolve_raw_capture(conn: Connection, week: date, tier: Tier, capture_id: str | None) -> Capture:
    """The capture a downstream stage reads: ``capture_id`` if given, else the partition's latest
    RAW capture. Captures are identified by their raw rows, so a restatement that was ingested but
    not yet normalized is the latest capture, and compute says so instead of silently using an
    older one."""
    partition = and_(raw.c.week == week, raw.c.tier == tier.value)
    query = select(raw.c.capture_id, raw.c.captured_at).where(partition)
    if capture_id is not None:
        found = conn.execute(query.where(raw.c.capture_id == capture_id).limit(1)).first()
        if found is None:
            raise NotFound(f"no RAW capture {capture_id!r} for {_describe(week, tier)}")
    else:
        found = conn.execute(query.order_by(raw.c.captured_at.desc(), raw.c.capture_id.desc()).limit(1)).first()
        if found is None:
            raise NotFound(f"no RAW capture for {_describe(week, tier)}; run ingest first")
    return Capture(found.capture_id, found.captured_at)


# A table a stage replaces the capture's rows of, with any further equality conditions
# (rejects: only the stage's own).
Replaced = tuple[Table, Mapping[str, str]]


def _partition(week: date, tier: Tier, capture_id: str) -> dict[str, object]:
    return {"week": week, "tier": tier.value, "capture_id": capture_id}


def replace_capture(conn: Connection, week: date, tier: Tier, capture_id: str, tables: Sequence[Replaced]) -> None:
    """Lock the capture (:func:`lock_capture`), then delete its rows from ``tables``, which the
    stage is about to write again: a replay replaces, atomically with the rest of the stage. One
    round trip; a capture's first run deletes nothing, found as such by the capture index."""
    _open(conn, week, tier, capture_id, tables)


def open_capture(
    conn: Connection,
    week: date,
    tier: Tier,
    capture_id: str | None,
    tables: Sequence[Replaced],
    *,
    require_normalized: bool = False,
) -> Capture:
    """For a downstream stage: the RAW capture to read (:func:`resolve_raw_capture`), locked, its
    previous output in ``tables`` deleted (:func:`replace_capture`) and, if
    ``require_normalized``, :class:`NotFound` unless normalize ran for it (it left rows or rejects).
    One round trip when ``capture_id`` is given; the latest capture is looked up first."""
    found: Capture | None = None
    if capture_id is None:
        found = resolve_raw_capture(conn, week, tier, None)
        capture_id = found.capture_id
    captured_at, normalized_done = _open(
        conn, week, tier, capture_id, tables, find=found is None, check_normalized=require_normalized
    )
    if found is None:
        if captured_at is None:
            raise NotFound(f"no RAW capture {capture_id!r} for {_describe(week, tier)}")
        found = Capture(capture_id, captured_at)
    if require_normalized and not normalized_done:
        raise NotFound(f"capture {capture_id} has not been normalized; run normalize first")
    return found


def _open(
    conn: Connection,
    week: date,
    tier: Tier,
    capture_id: str,
    tables: Sequence[Replaced],
    *,
    find: bool = False,
    check_normalized: bool = False,
) -> tuple[datetime | None, bool]:
    """Lock; then optionally find the capture's raw rows and whether it was normalized; then the
    deletes. Sent together and executed in that order; the results are read at the end. (If the
    capture turns out missing, the caller raises and the deletes roll back with the stage.)"""
    partition = _partition(week, tier, capture_id)
    driver = driver_connection(conn)
    # Pipeline mode needs libpq 14 or later (psycopg[binary] bundles one); else one trip each.
    batch: AbstractContextManager[Any] = driver.pipeline() if Pipeline.is_supported() else nullcontext()
    with driver.cursor() as cursor, driver.cursor() as raw_cursor, driver.cursor() as done_cursor:
        with batch:
            cursor.execute(_LOCK.format(sql.Literal(capture_id)))
            if find:
                raw_cursor.execute(_FIND.format(sql.Identifier(raw.name), where_clause(raw, partition)))
            if check_normalized:
                done_cursor.execute(_normalized_statement(week, tier, capture_id))
            for table, extra in tables:
                cursor.execute(delete_statement(table, {**partition, **extra}))
        row = raw_cursor.fetchone() if find else None
        done = done_cursor.fetchone() if check_normalized else None
    return (row[0] if row else None), bool(done and done[0])


def _normalized_statement(week: date, tier: Tier, capture_id: str) -> sql.Composed:
    # Normalize ran for the capture if it left normalized rows or NORMALIZED rejects (a week whose
    # every row was rejected is normalized too, with zero rows).
    partition = _partition(week, tier, capture_id)
    return sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {}) OR EXISTS (SELECT FROM {} WHERE {})").format(
        sql.Identifier(normalized.name),
        where_clause(normalized, partition),
        sql.Identifier(rejects.name),
        where_clause(rejects, {**partition, "stage": Stage.NORMALIZED.value}),
    )
