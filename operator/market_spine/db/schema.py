"""SQLAlchemy Core tables: the one description of the database, read by Alembic and the repositories.

Alembic revisions under ``migrations/versions`` create and change these tables; nothing else
issues DDL. Names follow :data:`NAMING_CONVENTION` so constraints and indexes have stable, greppable
names (``ck_core_work_items_state``, ``ix_…``) that a DBA can refer to in a migration.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from market_spine.core.lifecycle import INITIAL
from market_spine.core.states import WorkState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

_STATES = ", ".join(f"'{s.value}'" for s in WorkState)


def _now() -> Column[object]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


core_work_items = Table(
    "core_work_items",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("domain", Text, nullable=False),
    Column("pipeline", Text, nullable=False),
    Column("partition_key", Text, nullable=False, comment="Canonical JSON (sorted keys) of the partition."),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("state", Text, nullable=False, server_default=INITIAL.value),  # a new item, as core.lifecycle says
    Column("priority", Integer, nullable=False, server_default="100"),
    Column("desired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="3"),
    Column("backoff_seconds", Integer, nullable=False, server_default="300"),
    Column("backoff_factor", Float, nullable=False, server_default="2"),
    Column("max_backoff_seconds", Integer, nullable=False, server_default="3600"),
    Column("jitter_seconds", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("current_execution_id", Text),
    Column("latest_execution_id", Text),
    Column("capture_id", Text),
    Column("chain", Boolean, nullable=False, server_default=text("false")),
    Column("locked_by", Text, comment="Worker id (local backend) or operator name holding the item."),
    Column("locked_at", DateTime(timezone=True)),
    Column(
        "version",
        BigInteger,
        nullable=False,
        server_default="0",
        comment="Bumped by every write: each state write is compare-and-set on the version it was planned from.",
    ),
    Column("total_attempts", Integer, nullable=False, server_default="0", comment="Attempts ever started."),
    Column("state_reason", Text, comment="Why the item is in its state: a failure reason, Cancelled, Dismissed."),
    Column("state_message", Text, comment="The same, in words."),
    Column("upstream_execution_id", Text, comment="The upstream run a chained item reads."),
    Column("started_at", DateTime(timezone=True), comment="When the current (or last) attempt started."),
    Column(
        "lease_expires_at",
        DateTime(timezone=True),
        comment="Local backend: the running attempt is lost unless its worker renews this first.",
    ),
    Column("deadline_at", DateTime(timezone=True), comment="Local backend: the running attempt's deadline."),
    Column("active_deadline_seconds", Integer, comment="Per-attempt deadline; the default applies when NULL."),
    Column("k8s_namespace", Text),
    Column("k8s_name", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _now(),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("domain", "pipeline", "partition_key"),
    CheckConstraint(f"state IN ({_STATES})", name="state"),
    CheckConstraint("attempt_count >= 0 AND max_attempts >= 1", name="attempts"),
    Index("ix_core_work_items_state", "state"),
    Index("ix_core_work_items_desired_at", "desired_at"),
    Index("ix_core_work_items_next_attempt", "next_attempt_at", postgresql_where=text("state = 'RETRY_WAIT'")),
    Index("ix_core_work_items_domain_pipeline", "domain", "pipeline"),
    # Every worker's reaper: running attempts whose lease ran out.
    Index("ix_core_work_items_lease", "lease_expires_at", postgresql_where=text("state = 'RUNNING'")),
    # The worker's claim query: runnable items by priority, then age.
    Index(
        "ix_core_work_items_claim",
        text("priority DESC"),
        "desired_at",
        postgresql_where=text("state = 'PENDING'"),
    ),
)

core_executions = Table(
    "core_executions",
    metadata,
    Column("execution_id", Text, primary_key=True),
    Column("work_item_id", BigInteger, ForeignKey("core_work_items.id", ondelete="SET NULL")),
    Column("domain", Text, nullable=False),
    Column("pipeline", Text, nullable=False),
    Column("partition_key", Text, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("backend", Text, nullable=False, comment="local, kubernetes or cli"),
    Column("job_name", Text),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", Text, nullable=False, server_default="RUNNING"),
    Column("error", Text),
    Column("capture_id", Text),
    Column("row_count", BigInteger),
    UniqueConstraint("work_item_id", "attempt"),
    CheckConstraint("outcome IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'RELEASED')", name="outcome"),
    Index("ix_core_executions_partition", "domain", "pipeline", "partition_key"),
)

core_manifest = Table(
    "core_manifest",
    metadata,
    Column("domain", Text, primary_key=True),
    Column("partition_key", Text, primary_key=True),
    Column("stage", Text, primary_key=True),
    Column("week", Date, nullable=False, comment="The trading week (FINRA's weekStartDate, a Monday)."),
    Column("tier", Text, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("capture_id", Text, nullable=False),
    Column("execution_id", Text),
    _now(),
    Column(
        "upstream_execution_id",
        Text,
        comment="The execution that wrote the stage's input (NULL for RAW, and for rows older than lineage).",
    ),
    Column("upstream_capture_id", Text, comment="The capture the stage's input belongs to (NULL for RAW)."),
    CheckConstraint("stage IN ('RAW', 'NORMALIZED', 'CALC')", name="stage"),
    Index("ix_core_manifest_domain_week", "domain", "week"),
)

PREFIX = "finra_otc_transparency"


class WholeNumber(TypeDecorator[int]):
    """``NUMERIC`` for volumes that are sums: any number of rows, each up to BIGINT's maximum, add
    up without overflow. Read back as a Python ``int`` (the values are whole numbers)."""

    impl = Numeric
    cache_ok = True

    def process_result_value(self, value: object, dialect: Dialect) -> int | None:
        return None if value is None else int(value)  # type: ignore[call-overload]


# FINRA Query API fields beyond the weekly file's eight columns: (API field, raw column).
FINRA_API_FIELDS: tuple[tuple[str, str], ...] = (
    ("weekStartDate", "week_start_date"),
    ("summaryTypeCode", "summary_type_code"),
    ("initialPublishedDate", "initial_published_date"),
    ("lastReportedDate", "last_reported_date"),
    ("tierIdentifier", "tier_identifier"),
    ("firmCRDNumber", "firm_crd_number"),
    ("productTypeCode", "product_type_code"),
    ("totalNotionalSum", "total_notional_sum"),
)
FINRA_API_COLUMNS: tuple[str, ...] = tuple(column for _, column in FINRA_API_FIELDS)


def _capture_columns() -> list[Column[object]]:
    return [
        Column("capture_id", Text, nullable=False),
        Column("captured_at", DateTime(timezone=True), nullable=False),
        Column("execution_id", Text),
        Column("week", Date, nullable=False, comment="The trading week (FINRA's weekStartDate, a Monday)."),
        Column("tier", Text, nullable=False),
    ]


def _time_series_indexes(table: str, with_symbol: bool = True) -> list[Index]:
    # The seed's DBA guidance: capture (as-of), symbol (desk look-ups), latest (newest capture).
    indexes = [
        Index(f"ix_{table}_capture", "week", "tier", "capture_id"),
        Index(f"ix_{table}_latest", "week", "tier", text("captured_at DESC")),
    ]
    if with_symbol:
        indexes.append(Index(f"ix_{table}_symbol", "symbol", "week", "tier"))
    return indexes


raw = Table(
    f"{PREFIX}_raw",
    metadata,
    *_capture_columns(),
    Column("source_file", Text, nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("record_hash", Text, nullable=False),
    # FINRA's fields exactly as received (text), so normalization can judge and reject them.
    Column("tier_description", Text),
    Column("issue_symbol_identifier", Text),
    Column("issue_name", Text),
    Column("market_participant_name", Text),
    Column("mpid", Text),
    Column("total_weekly_share_quantity", Text),
    Column("total_weekly_trade_count", Text),
    Column("last_update_date", Text, comment="FINRA's publication (or correction) day of the row, not its week."),
    # FINRA's API fields that weekly files lack (NULL for rows from a file), kept as received.
    *(Column(name, Text) for name in FINRA_API_COLUMNS),
    Column(
        "defect",
        Text,
        comment="Why the line could not be stored exactly as received (bytes not UTF-8, a NUL byte, an over-long "
        "line), shown in its fields as \\xNN; NULL for a line stored as received. Normalize rejects the row with it.",
    ),
    # One index, not the seed's three: every raw row is written by ingest and read once by
    # normalize, and each index costs ingest ~5 ms per 5,000 rows. It serves the latest view
    # and the latest-capture query in their order (captured_at DESC, capture_id DESC), and the
    # capture look-ups (week, tier, capture_id): within the partition's few captures, PostgreSQL
    # 18 skips from one captured_at to the next, older versions read the partition's entries.
    # No symbol index: desk look-ups by symbol read the normalized and calc tables, which keep
    # theirs.
    Index(f"ix_{PREFIX}_raw_latest_capture", "week", "tier", text("captured_at DESC"), text("capture_id DESC")),
)

normalized = Table(
    f"{PREFIX}_normalized",
    metadata,
    *_capture_columns(),
    Column("line_number", Integer, nullable=False),
    Column("record_hash", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("issue_name", Text),
    Column("mpid", Text, nullable=False),
    Column("market_participant_name", Text),
    Column("share_quantity", BigInteger, nullable=False),
    Column("trade_count", BigInteger, nullable=False),
    CheckConstraint("share_quantity >= 0 AND trade_count >= 0", name="non_negative"),
    *_time_series_indexes(f"{PREFIX}_normalized"),
)

rejects = Table(
    f"{PREFIX}_rejects",
    metadata,
    *_capture_columns(),
    Column("stage", Text, nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("record", JSONB, nullable=False, comment="The rejected row as received."),
    Index(f"ix_{PREFIX}_rejects_capture", "week", "tier", "capture_id"),
)

venue_volume = Table(
    f"{PREFIX}_venue_volume",
    metadata,
    *_capture_columns(),
    Column("symbol", Text, nullable=False),
    Column("mpid", Text, nullable=False),
    Column(
        "volume", WholeNumber, nullable=False, comment="Sum of the venue's rows for the symbol (NUMERIC: no overflow)."
    ),
    Column("trade_count", WholeNumber, nullable=False),
    Column("share", Float, comment="volume / symbol volume; NULL when the symbol's volume is 0"),
    CheckConstraint("share IS NULL OR (share >= 0 AND share <= 1)", name="share_range"),
    *_time_series_indexes(f"{PREFIX}_venue_volume"),
)

symbol_hhi = Table(
    f"{PREFIX}_symbol_hhi",
    metadata,
    *_capture_columns(),
    Column("symbol", Text, nullable=False),
    Column("volume", WholeNumber, nullable=False),
    Column("venue_count", Integer, nullable=False),
    Column("hhi", Float, comment="Sum of squared venue shares; NULL when the symbol's volume is 0"),
    CheckConstraint("hhi IS NULL OR (hhi >= 0 AND hhi <= 1.000000001)", name="hhi_range"),
    *_time_series_indexes(f"{PREFIX}_symbol_hhi"),
)

tier_venue_share = Table(
    f"{PREFIX}_tier_venue_share",
    metadata,
    *_capture_columns(),
    Column("mpid", Text, nullable=False),
    Column("volume", WholeNumber, nullable=False),
    Column("share", Float),
    Column("rank", Integer, nullable=False),
    *_time_series_indexes(f"{PREFIX}_tier_venue_share", with_symbol=False),
)

captures = Table(
    f"{PREFIX}_captures",
    metadata,
    Column("capture_id", Text, primary_key=True),
    Column("captured_at", DateTime(timezone=True), nullable=False),
    Column("execution_id", Text),
    Column("week", Date, nullable=False, comment="The trading week (FINRA's weekStartDate, a Monday)."),
    Column("tier", Text, nullable=False),
    Column("source_file", Text, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("published_from", Date, comment="Earliest FINRA publication date (lastUpdateDate) on the capture's rows."),
    Column(
        "published_to", Date, comment="Latest FINRA publication date: later than published_from after a correction."
    ),
    Index(f"ix_{PREFIX}_captures_partition", "week", "tier"),
    comment="One row per capture written by ingest: where it came from and which FINRA publication it holds.",
)

# Tables that have a "<name>_latest" view: the rows of the newest capture per (week, tier).
CAPTURED_TABLES: tuple[Table, ...] = (raw, normalized, rejects, venue_volume, symbol_hhi, tier_venue_share)


def latest_view_name(table: Table) -> str:
    return f"{table.name}_latest"
