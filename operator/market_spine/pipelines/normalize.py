"""``finra.otc_transparency.normalize_week``: validate one capture's raw rows into normalized rows
or rejects with a reason (stage NORMALIZED).

Called through the registry by ``services.runs``. Reads the capture named by
``ctx.params["capture_id"]``, else the partition's latest RAW capture. The work is one set-based
statement (:mod:`market_spine.pipelines.rules` says what is wrong with a row, in SQL): PostgreSQL
reads the raw rows, judges them, and writes the normalized rows and the rejects itself, so no row
crosses to Python and memory stays flat whatever the week's size. Every raw row ends up in exactly
one of ``normalized`` and ``rejects`` (normalized + rejects = raw): nothing is dropped silently,
and a bad row never aborts the batch. Rules, first failure wins:

- the line was stored as received (ingest marks a ``defect``: bytes that are not UTF-8, a NUL
  byte, an over-long line);
- the row has all of FINRA's fields;
- ``lastUpdateDate`` (the day FINRA published or corrected the row) is a ``YYYY-MM-DD`` date on or
  after the week's first publication: a row published earlier describes an earlier week and is
  never mixed in (a later date is a correction, and fine);
- for rows from FINRA's API, ``weekStartDate`` is the partition's week and ``summaryTypeCode`` is
  ``ATS_W_SMBL_FIRM`` (an ATS venue row: non-ATS firms and totals never enter venue shares);
- ``tierDescription`` is a known tier alias and is the partition's tier;
- symbol and MPID are non-blank once stripped; the symbol is kept as published (in FINRA's
  symbology a lower-case suffix can be another security), the MPID is upper-cased;
- share quantity and trade count are non-negative integers that fit a BIGINT (plain digits:
  "1,234" is rejected, because FINRA never writes it and guessing a thousands separator could
  invent volume; a number of thousands of digits is out of range, not an error);
- the row is not an exact duplicate (same symbol, MPID, share quantity and trade count) of an
  earlier accepted row: it would count the same volume twice ("duplicate of line N").

The stage records its lineage: the ingest execution that wrote the raw rows it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Insert, and_, delete, func, insert, literal, select

from market_spine.core.calendar import WEEK
from market_spine.core.stages import NORMALIZE, Stage
from market_spine.db.schema import captures, normalized, raw, rejects
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.manifest import Capture, Replaced, open_capture, set_work_mem, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register
from market_spine.pipelines.rules import CALENDAR_YEARS, DUPLICATE_KEY, Judge, concat, record

NORMALIZED_COLUMNS: tuple[str, ...] = (
    "capture_id",
    "captured_at",
    "execution_id",
    "week",
    "tier",
    "line_number",
    "record_hash",
    "symbol",
    "issue_name",
    "mpid",
    "market_participant_name",
    "share_quantity",
    "trade_count",
)
REJECT_COLUMNS: tuple[str, ...] = (
    "capture_id",
    "captured_at",
    "execution_id",
    "week",
    "tier",
    "stage",
    "line_number",
    "reason",
    "record",
)


def _calendar(ctx: RunContext, earliest: date) -> list[tuple[date, date]]:
    """(week, first publication) of the weeks a row published before the partition's week could
    belong to, newest last: from the week FINRA published on the capture's earliest
    ``lastUpdateDate`` (at most :data:`CALENDAR_YEARS` back) to the week before the partition's."""
    calendar = finra_calendar()
    oldest = ctx.week - timedelta(days=365 * CALENDAR_YEARS)
    try:
        start = max(oldest, calendar.newest_published_week(ctx.tier, earliest))
    except (OverflowError, ValueError):  # a date near year 1: older than any window anyway
        start = oldest
    weeks = []
    week = ctx.week - WEEK
    while week >= start:
        weeks.append((week, calendar.first_publication(week, ctx.tier)))
        week -= WEEK
    return weeks[::-1]


def _duplicates(judge: Judge, capture: Capture, constants: Sequence[ColumnElement[Any]]) -> Insert:
    """Move exact duplicates from the normalized rows just written to the rejects: a hash of the
    capture's kept rows by (symbol, MPID, shares, trades) finds the keys seen twice; every row of
    such a key but the first is deleted and rejected as "duplicate of line N", with its record
    read back from raw. A week without duplicates (every real one) stops at the hash."""
    n = normalized.c
    mine = and_(n.week == judge.week, n.tier == judge.tier.value, n.capture_id == capture.capture_id)
    key = [n[name] for name in DUPLICATE_KEY]
    dups = (
        select(*key, func.min(n.line_number).label("first_line"))
        .where(mine)
        .group_by(*key)
        .having(func.count() > 1)
        .cte("duplicates")
        .prefix_with("MATERIALIZED")  # computed once, even if the planner loops over it
    )
    same_capture = judge.partition(capture.capture_id)
    moved = (
        delete(normalized)
        .where(mine, *(n[name] == dups.c[name] for name in DUPLICATE_KEY), n.line_number != dups.c.first_line)
        .returning(n.line_number, dups.c.first_line)
        .cte("moved")
    )
    rows = select(
        *constants,
        literal(Stage.NORMALIZED.value),
        moved.c.line_number,
        concat("duplicate of line ", moved.c.first_line),
        record(),
    ).select_from(moved.join(raw, and_(same_capture, raw.c.line_number == moved.c.line_number)))
    return insert(rejects).from_select(REJECT_COLUMNS, rows)


def _rowcount(conn: Connection, statement: Insert) -> int:
    """Rows an INSERT … SELECT wrote (SQLAlchemy keeps the count only when asked to)."""
    return int(conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount)


@register(NORMALIZE, Stage.NORMALIZED, "Validate raw rows into normalized rows; bad rows go to rejects")
def normalize_week(ctx: RunContext) -> StageResult:
    with ctx.engine.begin() as conn:
        replaced: list[Replaced] = [(normalized, {}), (rejects, {"stage": Stage.NORMALIZED.value})]
        capture = open_capture(conn, ctx.week, ctx.tier, ctx.params.get("capture_id"), replaced, reads=Stage.RAW)
        set_work_mem(conn)
        cid = capture.capture_id
        published = finra_calendar().first_publication(ctx.week, ctx.tier)
        earliest = conn.execute(select(captures.c.published_from).where(captures.c.capture_id == cid)).scalar()
        calendar = _calendar(ctx, earliest) if earliest is not None and earliest < published else []
        judge = Judge(ctx.week, ctx.tier, published, calendar)
        constants: list[ColumnElement[Any]] = [
            literal(cid),
            literal(capture.captured_at),
            literal(ctx.execution_id),
            literal(ctx.week),
            literal(ctx.tier.value),
        ]
        reason = judge.reason()
        mine = judge.partition(cid)
        # Three statements, each a single pass: the kept rows, the rejected ones (the cheap test
        # that passes a clean row is all most rows cost), then the duplicates among the kept.
        kept = _rowcount(
            conn,
            insert(normalized).from_select(
                NORMALIZED_COLUMNS,
                select(*constants, raw.c.line_number, raw.c.record_hash, *judge.values()).where(mine, reason.is_(None)),
            ),
        )
        rejected = _rowcount(
            conn,
            insert(rejects).from_select(
                REJECT_COLUMNS,
                select(*constants, literal(Stage.NORMALIZED.value), raw.c.line_number, reason, record()).where(
                    mine, reason.is_not(None)
                ),
            ),
        )
        # The rows just written have no statistics yet: the planner takes them for a handful and
        # would join them by nested loops, one scan of the week per duplicate key (hours for a
        # large week). Hash joins cost one pass whatever the counts.
        conn.execute(select(func.set_config("enable_nestloop", "off", True)))
        repeated = _rowcount(conn, _duplicates(judge, capture, constants))
        count, rejected_count = kept - repeated, rejected + repeated
        upsert_manifest(
            conn,
            stage=Stage.NORMALIZED,
            week=ctx.week,
            tier=ctx.tier,
            row_count=count,
            capture_id=cid,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
            upstream=capture.upstream,
        )
    if ctx.progress is not None:
        ctx.progress(count + rejected_count)
    return StageResult(Stage.NORMALIZED, cid, count, rejected=rejected_count)
