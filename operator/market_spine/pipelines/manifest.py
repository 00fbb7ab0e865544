"""Stage bookkeeping shared by ingest, normalize and compute: the manifest upsert, capture locks,
and which capture a stage reads.

Called by the three FINRA stages inside their transaction. ``core_manifest`` has one row per
(domain, partition, stage) saying which capture that stage last produced, how many rows, and its
lineage: the execution (and capture) whose output it was computed from. The doctor reads it to
find missing partitions, incomplete chains, and stages computed from an older load of their input.

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
from market_spine.db.schema import captures, core_manifest, normalized, raw, rejects
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
# Stages writing the same capture are serialized until their transaction ends: Kubernetes may start
# a Job's pod twice, and two workers may replay one capture at once; both would delete nothing the
# other had committed and then both insert, doubling the rows. A transaction-level advisory lock on
# the capture (the same key whichever stage takes it) makes the second wait, then replace.
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({}, 0))")


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
    upstream: Upstream | None = None,
) -> None:
    """Record that ``stage`` of the partition now holds ``capture_id`` with ``row_count`` rows,
    computed from ``upstream`` (``None`` for RAW, which reads a source)."""
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
        "upstream_execution_id": upstream.execution_id if upstream else None,
        "upstream_capture_id": upstream.capture_id if upstream else None,
    }
    driver_connection(conn).execute(_UPSERT, values)


# Memory PostgreSQL may give each sort or hash of a stage's statements (the server's, not this
# process's): a large week's keys are then sorted and grouped in memory rather than on disk.
STAGE_WORK_MEM = "128MB"


def set_work_mem(conn: Connection) -> None:
    """``work_mem`` for the rest of this transaction only (``set_config(…, true)``)."""
    driver_connection(conn).execute("SELECT set_config('work_mem', %s, true)", [STAGE_WORK_MEM])


@dataclass(frozen=True)
class Upstream:
    """What a stage was computed from: the execution that wrote its input, and that input's capture."""

    execution_id: str | None
    capture_id: str


@dataclass(frozen=True)
class Capture:
    capture_id: str
    captured_at: datetime
    upstream: Upstream  # the execution that wrote the rows the opening stage reads


def _describe(week: date, tier: Tier) -> str:
    return f"week {week.isoformat()} tier {tier.value}"


def latest_raw_capture(conn: Connection, week: date, tier: Tier) -> str:
    """The partition's latest RAW capture. Captures are identified by their raw rows, so a
    restatement that was ingested but not yet normalized is the latest capture, and compute says
    so instead of silently using an older one."""
    query = (
        select(raw.c.capture_id)
        .where(and_(raw.c.week == week, raw.c.tier == tier.value))
        .order_by(raw.c.captured_at.desc(), raw.c.capture_id.desc())
        .limit(1)
    )
    found = conn.execute(query).scalar()
    if found is None:
        raise NotFound(f"no RAW capture for {_describe(week, tier)}; run ingest first")
    return str(found)


# A table a stage replaces the capture's rows of, with any further equality conditions
# (rejects: only the stage's own).
Replaced = tuple[Table, Mapping[str, str]]


def _partition(week: date, tier: Tier, capture_id: str) -> dict[str, object]:
    return {"week": week, "tier": tier.value, "capture_id": capture_id}


def replace_capture(conn: Connection, week: date, tier: Tier, capture_id: str, tables: Sequence[Replaced]) -> None:
    """Lock the capture (``_LOCK``), then delete its rows from ``tables``, which the
    stage is about to write again: a replay replaces, atomically with the rest of the stage. One
    round trip; a capture's first run deletes nothing, found as such by the capture index."""
    _open(conn, _partition(week, tier, capture_id), tables, None)


def open_capture(
    conn: Connection, week: date, tier: Tier, capture_id: str | None, tables: Sequence[Replaced], *, reads: Stage
) -> Capture:
    """For a downstream stage that reads the ``reads`` stage's output of a capture: the capture
    (``capture_id``, else the partition's latest RAW capture), locked, with its previous output in
    ``tables`` deleted (:func:`replace_capture`) and the execution that wrote what it reads
    (:class:`NotFound` if the capture has no such output: not ingested, or not normalized).
    One round trip when ``capture_id`` is given; the latest capture is looked up first."""
    if capture_id is None:
        capture_id = latest_raw_capture(conn, week, tier)
    found = _open(conn, _partition(week, tier, capture_id), tables, reads)
    if found is None:
        raise NotFound(f"no RAW capture {capture_id!r} for {_describe(week, tier)}")
    captured_at, upstream, done = found
    if not done:
        raise NotFound(f"capture {capture_id} has not been normalized; run normalize first")
    return Capture(capture_id, captured_at, Upstream(upstream, capture_id))


def _open(
    conn: Connection, partition: Mapping[str, object], tables: Sequence[Replaced], reads: Stage | None
) -> tuple[datetime, str | None, bool] | None:
    """Lock; then, for a stage that reads ``reads``, find the capture and who wrote its input;
    then the deletes. Sent together and executed in that order; the results are read at the end.
    (If the capture turns out missing, the caller raises and the deletes roll back with the stage.)
    Returns (captured_at, upstream execution, whether the input exists), or ``None`` if the
    capture does not exist."""
    driver = driver_connection(conn)
    # Pipeline mode needs libpq 14 or later (psycopg[binary] bundles one); else one trip each.
    batch: AbstractContextManager[Any] = driver.pipeline() if Pipeline.is_supported() else nullcontext()
    with driver.cursor() as cursor, driver.cursor() as found_cursor:
        with batch:
            cursor.execute(_LOCK.format(sql.Literal(partition["capture_id"])))
            if reads is not None:
                found_cursor.execute(_input_statement(partition, reads))
            for table, extra in tables:
                cursor.execute(delete_statement(table, {**partition, **extra}))
        row = found_cursor.fetchone() if reads is not None else None
    if row is None:
        return None
    captured_at, ingest_execution, normalize_execution, normalized_done = row
    if reads is Stage.RAW:
        return captured_at, ingest_execution, True
    return captured_at, normalize_execution, bool(normalized_done)


def _input_statement(partition: Mapping[str, object], reads: Stage) -> sql.Composed:
    """The capture's row (when it was taken, which ingest wrote it) and, when the stage reads
    normalized rows, which normalize execution wrote them and whether normalize ran at all (it
    left normalized rows or NORMALIZED rejects: a week whose every row was rejected is normalized
    too, with zero rows)."""
    if reads is Stage.RAW:
        return sql.SQL("SELECT captured_at, execution_id, NULL, NULL FROM {} WHERE {}").format(
            sql.Identifier(captures.name), where_clause(captures, partition)
        )
    wrote = sql.SQL("(SELECT {} FROM {} WHERE {} LIMIT 1)")
    by_rows = wrote.format(
        sql.Identifier("execution_id"), sql.Identifier(normalized.name), where_clause(normalized, partition)
    )
    rejected = {**partition, "stage": Stage.NORMALIZED.value}
    by_rejects = wrote.format(
        sql.Identifier("execution_id"), sql.Identifier(rejects.name), where_clause(rejects, rejected)
    )
    return sql.SQL(
        "SELECT captured_at, execution_id, COALESCE({0}, {1}), "
        "EXISTS (SELECT FROM {2} WHERE {3}) OR EXISTS (SELECT FROM {4} WHERE {5}) FROM {6} WHERE {7}"
    ).format(
        by_rows,
        by_rejects,
        sql.Identifier(normalized.name),
        where_clause(normalized, partition),
        sql.Identifier(rejects.name),
        where_clause(rejects, rejected),
        sql.Identifier(captures.name),
        where_clause(captures, partition),
    )
