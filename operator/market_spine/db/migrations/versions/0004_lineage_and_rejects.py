"""Lineage in the manifest, damaged lines in raw, volume sums as NUMERIC.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:00:00.000000

- ``core_manifest`` gains ``upstream_execution_id`` and ``upstream_capture_id``: the execution
  (and capture) whose output a NORMALIZED or CALC row was computed from, so the doctor can tell a
  stage computed from an older load of its input (a replayed ingest, a normalize re-run without
  compute) from a current one. Rows written before this revision keep NULL: unknown, not judged.
- ``finra_otc_transparency_raw`` gains ``defect``: why ingest could not store a line exactly as
  received (bytes that are not UTF-8, a NUL byte, an over-long line); normalize rejects such a
  row with that reason. NULL for every row already stored.
- The volumes that are sums (``venue_volume.volume`` and ``trade_count``, ``symbol_hhi.volume``,
  ``tier_venue_share.volume``) become NUMERIC: each normalized row is at most BIGINT's maximum,
  but a symbol's or a tier's total of such rows is not. The latest views select ``t.*``, so they
  are dropped and created again around the type change (the same definition as revision 0002).

Downgrade drops the columns and casts the volumes back to BIGINT (it fails if a stored sum no
longer fits, rather than lose it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
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
SUMS = (
    (f"{PREFIX}_venue_volume", "volume"),
    (f"{PREFIX}_venue_volume", "trade_count"),
    (f"{PREFIX}_symbol_hhi", "volume"),
    (f"{PREFIX}_tier_venue_share", "volume"),
)
DEFECT_COMMENT = (
    "Why the line could not be stored exactly as received (bytes not UTF-8, a NUL byte, an over-long line), "
    "shown in its fields as \\xNN; NULL for a line stored as received. Normalize rejects the row with it."
)
VOLUME_COMMENT = "Sum of the venue's rows for the symbol (NUMERIC: no overflow)."


def _views(create: bool) -> None:
    for table in CAPTURED_TABLES:
        # Identifiers are this revision's constants, never input.
        op.execute(sa.text(f"DROP VIEW IF EXISTS {table}_latest"))
        if create:
            op.execute(
                sa.text(
                    f"CREATE VIEW {table}_latest AS "  # noqa: S608
                    f"SELECT t.* FROM {table} t JOIN ("
                    f"  SELECT DISTINCT ON (week, tier) week, tier, capture_id FROM {table}"
                    f"  ORDER BY week, tier, captured_at DESC, capture_id DESC"
                    f") latest USING (week, tier, capture_id)"
                )
            )


def upgrade() -> None:
    op.add_column(
        "core_manifest",
        sa.Column(
            "upstream_execution_id",
            sa.Text(),
            nullable=True,
            comment="The execution that wrote the stage's input (NULL for RAW, and for rows older than lineage).",
        ),
    )
    op.add_column(
        "core_manifest",
        sa.Column(
            "upstream_capture_id",
            sa.Text(),
            nullable=True,
            comment="The capture the stage's input belongs to (NULL for RAW).",
        ),
    )
    _views(create=False)
    op.add_column(f"{PREFIX}_raw", sa.Column("defect", sa.Text(), nullable=True, comment=DEFECT_COMMENT))
    for table, column in SUMS:
        op.alter_column(table, column, type_=sa.Numeric(), existing_type=sa.BigInteger(), existing_nullable=False)
    op.alter_column(f"{PREFIX}_venue_volume", "volume", comment=VOLUME_COMMENT, existing_type=sa.Numeric())
    _views(create=True)


def downgrade() -> None:
    _views(create=False)
    op.alter_column(f"{PREFIX}_venue_volume", "volume", comment=None, existing_type=sa.Numeric())
    for table, column in SUMS:
        op.alter_column(
            table,
            column,
            type_=sa.BigInteger(),
            existing_type=sa.Numeric(),
            existing_nullable=False,
            postgresql_using=f"{column}::bigint",
        )
    op.drop_column(f"{PREFIX}_raw", "defect")
    _views(create=True)
    op.drop_column("core_manifest", "upstream_capture_id")
    op.drop_column("core_manifest", "upstream_execution_id")
