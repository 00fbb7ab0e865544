"""Initial schema: work items, executions, manifest, FINRA raw/normalized/rejects/calc tables, latest views.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 01:41:03.311732
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# Tables with a "<table>_latest" view: per (week_ending, tier), the rows of the newest capture only,
# so a symbol dropped by a restatement disappears from "latest" while as-of queries still see it.
CAPTURED_TABLES = (
    "finra_otc_transparency_raw",
    "finra_otc_transparency_normalized",
    "finra_otc_transparency_rejects",
    "finra_otc_transparency_venue_volume",
    "finra_otc_transparency_symbol_hhi",
    "finra_otc_transparency_tier_venue_share",
)


def _create_latest_views() -> None:
    for table in CAPTURED_TABLES:
        # Identifiers are this revision's constants, never input.
        op.execute(
            sa.text(
                f"CREATE VIEW {table}_latest AS "  # noqa: S608
                f"SELECT t.* FROM {table} t JOIN ("
                f"  SELECT DISTINCT ON (week_ending, tier) week_ending, tier, capture_id FROM {table}"
                f"  ORDER BY week_ending, tier, captured_at DESC, capture_id DESC"
                f") latest USING (week_ending, tier, capture_id)"
            )
        )


def upgrade() -> None:
    op.create_table(
        "core_manifest",
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("stage IN ('RAW', 'NORMALIZED', 'CALC')", name=op.f("ck_core_manifest_stage")),
        sa.PrimaryKeyConstraint("domain", "partition_key", "stage", name=op.f("pk_core_manifest")),
    )
    op.create_index("ix_core_manifest_domain_week", "core_manifest", ["domain", "week_ending"], unique=False)
    op.create_table(
        "core_work_items",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column(
            "partition_key",
            sa.Text(),
            nullable=False,
            comment="Canonical JSON (sorted keys) of the partition.",
        ),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), server_default="PENDING", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("desired_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="3", nullable=False),
        sa.Column("backoff_seconds", sa.Integer(), server_default="300", nullable=False),
        sa.Column("backoff_factor", sa.Float(), server_default="2", nullable=False),
        sa.Column("max_backoff_seconds", sa.Integer(), server_default="3600", nullable=False),
        sa.Column("jitter_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("current_execution_id", sa.Text(), nullable=True),
        sa.Column("latest_execution_id", sa.Text(), nullable=True),
        sa.Column("capture_id", sa.Text(), nullable=True),
        sa.Column("chain", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "locked_by",
            sa.Text(),
            nullable=True,
            comment="Worker id (local backend) or operator name holding the item.",
        ),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("k8s_namespace", sa.Text(), nullable=True),
        sa.Column("k8s_name", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('PENDING', 'RUNNING', 'RETRY_WAIT', 'COMPLETE', 'FAILED', 'CANCELLED')",
            name=op.f("ck_core_work_items_state"),
        ),
        sa.CheckConstraint("attempt_count >= 0 AND max_attempts >= 1", name=op.f("ck_core_work_items_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_work_items")),
        sa.UniqueConstraint(
            "domain",
            "pipeline",
            "partition_key",
            name=op.f("uq_core_work_items_domain_pipeline_partition_key"),
        ),
    )
    op.create_index(
        "ix_core_work_items_claim",
        "core_work_items",
        [sa.literal_column("priority DESC"), "desired_at"],
        unique=False,
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_index("ix_core_work_items_desired_at", "core_work_items", ["desired_at"], unique=False)
    op.create_index("ix_core_work_items_domain_pipeline", "core_work_items", ["domain", "pipeline"], unique=False)
    op.create_index(
        "ix_core_work_items_next_attempt",
        "core_work_items",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'RETRY_WAIT'"),
    )
    op.create_index("ix_core_work_items_state", "core_work_items", ["state"], unique=False)
    op.create_table(
        "finra_otc_transparency_normalized",
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("record_hash", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("issue_name", sa.Text(), nullable=True),
        sa.Column("mpid", sa.Text(), nullable=False),
        sa.Column("market_participant_name", sa.Text(), nullable=True),
        sa.Column("share_quantity", sa.BigInteger(), nullable=False),
        sa.Column("trade_count", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "share_quantity >= 0 AND trade_count >= 0",
            name=op.f("ck_finra_otc_transparency_normalized_non_negative"),
        ),
    )
    op.create_index(
        "ix_finra_otc_transparency_normalized_capture",
        "finra_otc_transparency_normalized",
        ["week_ending", "tier", "capture_id"],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_normalized_latest",
        "finra_otc_transparency_normalized",
        ["week_ending", "tier", sa.literal_column("captured_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_normalized_symbol",
        "finra_otc_transparency_normalized",
        ["symbol", "week_ending", "tier"],
        unique=False,
    )
    op.create_table(
        "finra_otc_transparency_raw",
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("record_hash", sa.Text(), nullable=False),
        sa.Column("tier_description", sa.Text(), nullable=True),
        sa.Column("issue_symbol_identifier", sa.Text(), nullable=True),
        sa.Column("issue_name", sa.Text(), nullable=True),
        sa.Column("market_participant_name", sa.Text(), nullable=True),
        sa.Column("mpid", sa.Text(), nullable=True),
        sa.Column("total_weekly_share_quantity", sa.Text(), nullable=True),
        sa.Column("total_weekly_trade_count", sa.Text(), nullable=True),
        sa.Column("last_update_date", sa.Text(), nullable=True),
    )
    # Raw has one index: capture look-ups and the latest view/query (see db/schema.py).
    op.create_index(
        "ix_finra_otc_transparency_raw_latest_capture",
        "finra_otc_transparency_raw",
        ["week_ending", "tier", sa.literal_column("captured_at DESC"), sa.literal_column("capture_id DESC")],
        unique=False,
    )
    op.create_table(
        "finra_otc_transparency_rejects",
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "record",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="The rejected row as received.",
        ),
    )
    op.create_index(
        "ix_finra_otc_transparency_rejects_capture",
        "finra_otc_transparency_rejects",
        ["week_ending", "tier", "capture_id"],
        unique=False,
    )
    op.create_table(
        "finra_otc_transparency_symbol_hhi",
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("venue_count", sa.Integer(), nullable=False),
        sa.Column(
            "hhi",
            sa.Float(),
            nullable=True,
            comment="Sum of squared venue shares; NULL when the symbol's volume is 0",
        ),
        sa.CheckConstraint(
            "hhi IS NULL OR (hhi >= 0 AND hhi <= 1.000000001)",
            name=op.f("ck_finra_otc_transparency_symbol_hhi_hhi_range"),
        ),
    )
    op.create_index(
        "ix_finra_otc_transparency_symbol_hhi_capture",
        "finra_otc_transparency_symbol_hhi",
        ["week_ending", "tier", "capture_id"],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_symbol_hhi_latest",
        "finra_otc_transparency_symbol_hhi",
        ["week_ending", "tier", sa.literal_column("captured_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_symbol_hhi_symbol",
        "finra_otc_transparency_symbol_hhi",
        ["symbol", "week_ending", "tier"],
        unique=False,
    )
    op.create_table(
        "finra_otc_transparency_tier_venue_share",
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("mpid", sa.Text(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("share", sa.Float(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
    )
    op.create_index(
        "ix_finra_otc_transparency_tier_venue_share_capture",
        "finra_otc_transparency_tier_venue_share",
        ["week_ending", "tier", "capture_id"],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_tier_venue_share_latest",
        "finra_otc_transparency_tier_venue_share",
        ["week_ending", "tier", sa.literal_column("captured_at DESC")],
        unique=False,
    )
    op.create_table(
        "finra_otc_transparency_venue_volume",
        sa.Column("capture_id", sa.Text(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("week_ending", sa.Date(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("mpid", sa.Text(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("trade_count", sa.BigInteger(), nullable=False),
        sa.Column(
            "share",
            sa.Float(),
            nullable=True,
            comment="volume / symbol volume; NULL when the symbol's volume is 0",
        ),
        sa.CheckConstraint(
            "share IS NULL OR (share >= 0 AND share <= 1)",
            name=op.f("ck_finra_otc_transparency_venue_volume_share_range"),
        ),
    )
    op.create_index(
        "ix_finra_otc_transparency_venue_volume_capture",
        "finra_otc_transparency_venue_volume",
        ["week_ending", "tier", "capture_id"],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_venue_volume_latest",
        "finra_otc_transparency_venue_volume",
        ["week_ending", "tier", sa.literal_column("captured_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_finra_otc_transparency_venue_volume_symbol",
        "finra_otc_transparency_venue_volume",
        ["symbol", "week_ending", "tier"],
        unique=False,
    )
    op.create_table(
        "core_executions",
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("work_item_id", sa.BigInteger(), nullable=True),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("backend", sa.Text(), nullable=False, comment="local, kubernetes or cli"),
        sa.Column("job_name", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), server_default="RUNNING", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("capture_id", sa.Text(), nullable=True),
        sa.Column("row_count", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
            name=op.f("ck_core_executions_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["work_item_id"],
            ["core_work_items.id"],
            name=op.f("fk_core_executions_work_item_id_core_work_items"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_core_executions")),
        sa.UniqueConstraint("work_item_id", "attempt", name=op.f("uq_core_executions_work_item_id_attempt")),
    )
    op.create_index(
        "ix_core_executions_partition",
        "core_executions",
        ["domain", "pipeline", "partition_key"],
        unique=False,
    )

    _create_latest_views()


def downgrade() -> None:
    for table in CAPTURED_TABLES:
        op.execute(sa.text(f"DROP VIEW IF EXISTS {table}_latest"))
    op.drop_index("ix_core_executions_partition", table_name="core_executions")
    op.drop_table("core_executions")
    op.drop_index("ix_finra_otc_transparency_venue_volume_symbol", table_name="finra_otc_transparency_venue_volume")
    op.drop_index("ix_finra_otc_transparency_venue_volume_latest", table_name="finra_otc_transparency_venue_volume")
    op.drop_index("ix_finra_otc_transparency_venue_volume_capture", table_name="finra_otc_transparency_venue_volume")
    op.drop_table("finra_otc_transparency_venue_volume")
    op.drop_index(
        "ix_finra_otc_transparency_tier_venue_share_latest",
        table_name="finra_otc_transparency_tier_venue_share",
    )
    op.drop_index(
        "ix_finra_otc_transparency_tier_venue_share_capture",
        table_name="finra_otc_transparency_tier_venue_share",
    )
    op.drop_table("finra_otc_transparency_tier_venue_share")
    op.drop_index("ix_finra_otc_transparency_symbol_hhi_symbol", table_name="finra_otc_transparency_symbol_hhi")
    op.drop_index("ix_finra_otc_transparency_symbol_hhi_latest", table_name="finra_otc_transparency_symbol_hhi")
    op.drop_index("ix_finra_otc_transparency_symbol_hhi_capture", table_name="finra_otc_transparency_symbol_hhi")
    op.drop_table("finra_otc_transparency_symbol_hhi")
    op.drop_index("ix_finra_otc_transparency_rejects_capture", table_name="finra_otc_transparency_rejects")
    op.drop_table("finra_otc_transparency_rejects")
    op.drop_index("ix_finra_otc_transparency_raw_latest_capture", table_name="finra_otc_transparency_raw")
    op.drop_table("finra_otc_transparency_raw")
    op.drop_index("ix_finra_otc_transparency_normalized_symbol", table_name="finra_otc_transparency_normalized")
    op.drop_index("ix_finra_otc_transparency_normalized_latest", table_name="finra_otc_transparency_normalized")
    op.drop_index("ix_finra_otc_transparency_normalized_capture", table_name="finra_otc_transparency_normalized")
    op.drop_table("finra_otc_transparency_normalized")
    op.drop_index("ix_core_work_items_state", table_name="core_work_items")
    op.drop_index(
        "ix_core_work_items_next_attempt",
        table_name="core_work_items",
        postgresql_where=sa.text("state = 'RETRY_WAIT'"),
    )
    op.drop_index("ix_core_work_items_domain_pipeline", table_name="core_work_items")
    op.drop_index("ix_core_work_items_desired_at", table_name="core_work_items")
    op.drop_index(
        "ix_core_work_items_claim",
        table_name="core_work_items",
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.drop_table("core_work_items")
    op.drop_index("ix_core_manifest_domain_week", table_name="core_manifest")
    op.drop_table("core_manifest")
