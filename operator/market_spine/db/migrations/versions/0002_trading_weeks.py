"""Partitions are FINRA trading weeks: ``week_ending`` becomes ``week``, raw keeps FINRA's API fields,
captures record their publication dates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00.000000

Until 0001 a partition's date was the ``lastUpdateDate`` FINRA stamps on a weekly file: the day
FINRA published the week, 21 days (NMS Tier 1) or 35 days (Tier 2, OTC) after the trading week's
Monday, or the next business day after a holiday. This revision relabels existing rows with the
trading week they describe, the Monday of ``date - delay``, which undoes the holiday move too (it
is never more than a few days). It rewrites every place the date appears: the ``week`` columns,
``partition_key`` JSON (``{"tier":…,"week":…}``), capture ids (``…:{TIER}:{week}:{YYYYMMDD}``)
and ``params.capture_id`` of work items. Two old partitions that fall in one trading week (a
FINRA correction ingested under its correction day) become restatements of that week: their
captures coexist, and for the manifest and work items the most recently updated row is kept.

Raw rows gain FINRA's API fields (NULL for rows from a file), and a captures table records, per
capture, its source, row count and the range of publication dates (``lastUpdateDate``) it carries,
filled here from the raw rows already stored.

Downgrade reverses the schema and relabels with ``week + delay`` (the holiday move is not
restored: a week published on a Tuesday comes back under its Monday).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PREFIX = "finra_otc_transparency"
CAPTURED_TABLES = (
    f"{PREFIX}_raw",
    f"{PREFIX}_normalized",
    f"{PREFIX}_rejects",
    f"{PREFIX}_venue_volume",
    f"{PREFIX}_symbol_hhi",
    f"{PREFIX}_tier_venue_share",
)
WEEK_TABLES = ("core_manifest", *CAPTURED_TABLES)
WEEK_COMMENT = "The trading week (FINRA's weekStartDate, a Monday)."
API_COLUMNS = (
    "week_start_date",
    "summary_type_code",
    "initial_published_date",
    "last_reported_date",
    "tier_identifier",
    "firm_crd_number",
    "product_type_code",
    "total_notional_sum",
)
LAST_UPDATE_COMMENT = "FINRA's publication (or correction) day of the row, not its week."
CAPTURES = f"{PREFIX}_captures"
CAPTURE_PATTERN = r"^finra\.otc_transparency:[A-Z0-9_]+:[0-9]{4}-[0-9]{2}-[0-9]{2}:[0-9]{8}$"


def _views(create: bool, column: str) -> None:
    for table in CAPTURED_TABLES:
        # Identifiers are this revision's constants, never input.
        op.execute(sa.text(f"DROP VIEW IF EXISTS {table}_latest"))
        if create:
            op.execute(
                sa.text(
                    f"CREATE VIEW {table}_latest AS "  # noqa: S608
                    f"SELECT t.* FROM {table} t JOIN ("
                    f"  SELECT DISTINCT ON ({column}, tier) {column}, tier, capture_id FROM {table}"
                    f"  ORDER BY {column}, tier, captured_at DESC, capture_id DESC"
                    f") latest USING ({column}, tier, capture_id)"
                )
            )


def _relabel_functions(sign: int) -> None:
    """Session-local SQL functions that move a date (and the ids that embed it) by the tier's delay:
    ``sign = -1`` from a publication day to its trading week, ``+1`` back."""
    moved = "(date_trunc('week', d - spine_delay(tier)))::date" if sign < 0 else "d + spine_delay(tier)"
    op.execute(
        sa.text(
            "CREATE OR REPLACE FUNCTION pg_temp.spine_delay(tier text) RETURNS int LANGUAGE sql IMMUTABLE AS "
            "$$ SELECT CASE tier WHEN 'NMS_TIER_1' THEN 21 ELSE 35 END $$"
        )
    )
    op.execute(
        sa.text(
            "CREATE OR REPLACE FUNCTION pg_temp.spine_week(d date, tier text) RETURNS date LANGUAGE sql IMMUTABLE AS "
            f"$$ SELECT {moved.replace('spine_delay', 'pg_temp.spine_delay')} $$"
        )
    )
    op.execute(
        sa.text(
            "CREATE OR REPLACE FUNCTION pg_temp.spine_capture(c text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ "
            f"SELECT CASE WHEN c ~ '{CAPTURE_PATTERN}' THEN concat_ws(':', split_part(c, ':', 1), "
            "split_part(c, ':', 2), pg_temp.spine_week(split_part(c, ':', 3)::date, split_part(c, ':', 2))::text, "
            "split_part(c, ':', 4)) ELSE c END $$"
        )
    )


def _partition_key(old: str, new: str) -> str:
    """SQL for the canonical key with date key ``old`` rewritten as ``new``: sorted keys ("tier"
    sorts before both "week" and "week_ending"), compact separators, as ``canonical_key`` writes."""
    moved = f"pg_temp.spine_week((partition_key::jsonb ->> '{old}')::date, partition_key::jsonb ->> 'tier')"
    return f'format(\'{{"tier":%s,"{new}":"%s"}}\', to_json(partition_key::jsonb ->> \'tier\'), {moved})'


def _relabel(old: str, new: str) -> None:
    """Rewrite the ``week`` columns, partition keys (key ``old`` becomes ``new``) and capture ids;
    the functions above say which way the dates move."""
    for table in WEEK_TABLES:
        op.execute(sa.text(f"UPDATE {table} SET week = pg_temp.spine_week(week, tier)"))  # noqa: S608
    for table in (*CAPTURED_TABLES, "core_manifest", "core_work_items", "core_executions"):
        op.execute(sa.text(f"UPDATE {table} SET capture_id = pg_temp.spine_capture(capture_id)"))  # noqa: S608
    op.execute(
        sa.text(
            "UPDATE core_work_items SET params = jsonb_set(params, '{capture_id}', "
            "to_jsonb(pg_temp.spine_capture(params ->> 'capture_id'))) WHERE params ? 'capture_id'"
        )
    )
    key = _partition_key(old, new)
    has_old = f"partition_key LIKE '{{%' AND partition_key::jsonb ? '{old}'"
    # Partitions that now name the same week: keep the most recently updated row of each.
    for table, identity in (("core_manifest", "domain, stage"), ("core_work_items", "domain, pipeline")):
        op.execute(
            sa.text(
                f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM ("  # noqa: S608
                f"  SELECT ctid, row_number() OVER (PARTITION BY {identity}, {key} ORDER BY updated_at DESC) AS n"
                f"  FROM {table} WHERE {has_old}) ranked WHERE n > 1)"
            )
        )
    for table in ("core_manifest", "core_work_items", "core_executions"):
        op.execute(sa.text(f"UPDATE {table} SET partition_key = {key} WHERE {has_old}"))  # noqa: S608


def upgrade() -> None:
    _views(create=False, column="week_ending")
    for table in WEEK_TABLES:
        op.alter_column(table, "week_ending", new_column_name="week", comment=WEEK_COMMENT)
    _relabel_functions(-1)
    _relabel(old="week_ending", new="week")
    op.alter_column(f"{PREFIX}_raw", "last_update_date", comment=LAST_UPDATE_COMMENT)
    for name in API_COLUMNS:
        op.add_column(f"{PREFIX}_raw", sa.Column(name, sa.Text(), nullable=True))
    op.create_table(
        CAPTURES,
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week", sa.Date(), nullable=False, comment=WEEK_COMMENT),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column(
            "published_from",
            sa.Date(),
            nullable=True,
            comment="Earliest FINRA publication date (lastUpdateDate) on the capture's rows.",
        ),
        sa.Column(
            "published_to",
            sa.Date(),
            nullable=True,
            comment="Latest FINRA publication date: later than published_from after a correction.",
        ),
        sa.PrimaryKeyConstraint("capture_id", name=op.f(f"pk_{CAPTURES}")),
        comment="One row per capture written by ingest: where it came from and which FINRA publication it holds.",
    )
    op.create_index(f"ix_{CAPTURES}_partition", CAPTURES, ["week", "tier"], unique=False)
    # Captures already stored: their publication dates are the valid lastUpdateDates of their rows.
    op.execute(
        sa.text(
            f"INSERT INTO {CAPTURES} (capture_id, captured_at, execution_id, week, tier, source_file, "  # noqa: S608
            "row_count, published_from, published_to) "
            "SELECT capture_id, min(captured_at), min(execution_id), min(week), min(tier), min(source_file), count(*), "
            "min(d), max(d) FROM (SELECT *, CASE WHEN last_update_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' "
            f"THEN last_update_date::date END AS d FROM {PREFIX}_raw) r GROUP BY capture_id"
        )
    )
    _views(create=True, column="week")


def downgrade() -> None:
    _views(create=False, column="week")
    op.drop_index(f"ix_{CAPTURES}_partition", table_name=CAPTURES)
    op.drop_table(CAPTURES)
    for name in API_COLUMNS:
        op.drop_column(f"{PREFIX}_raw", name)
    op.alter_column(f"{PREFIX}_raw", "last_update_date", comment=None)
    _relabel_functions(+1)
    _relabel(old="week", new="week_ending")  # before the rename: the columns are still "week"
    for table in WEEK_TABLES:
        op.alter_column(table, "week", new_column_name="week_ending", comment=None)
    _views(create=True, column="week_ending")
