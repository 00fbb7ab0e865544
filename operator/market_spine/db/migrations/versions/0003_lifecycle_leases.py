"""One lifecycle for both backends: versioned work items, leases and deadlines for local attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-11 09:00:00.000000

``core_work_items`` gains:

* ``version``: bumped by every write, so each state write is compare-and-set on the version it was
  planned from (a late writer finds 0 rows and re-reads instead of overwriting a newer decision);
* ``lease_expires_at`` and ``deadline_at``: a local worker's claim holds a lease its heartbeat
  renews, and a per-attempt deadline (``active_deadline_seconds``, else the worker's default);
  any worker ends an attempt whose lease or deadline passed;
* ``total_attempts`` (attempts ever started; numbers execution ids, never goes down), filled from
  the executions already recorded; ``state_reason`` and ``state_message`` (why the item is in its
  state: a failure, a cancel, a dismissal); ``upstream_execution_id`` (the upstream run a chained
  item reads); ``started_at`` of the current attempt.

``core_executions.outcome`` may be ``RELEASED``: an attempt a stopping worker gave back unfinished.
Downgrade drops the columns and turns RELEASED executions into CANCELLED ones.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    add: list[sa.Column[object]] = [
        sa.Column(
            "version",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="Bumped by every write: each state write is compare-and-set on the version it was planned from.",
        ),
        sa.Column("total_attempts", sa.Integer(), server_default="0", nullable=False, comment="Attempts ever started."),
        sa.Column(
            "state_reason", sa.Text(), comment="Why the item is in its state: a failure reason, Cancelled, Dismissed."
        ),
        sa.Column("state_message", sa.Text(), comment="The same, in words."),
        sa.Column("upstream_execution_id", sa.Text(), comment="The upstream run a chained item reads."),
        sa.Column("started_at", TIMESTAMP, comment="When the current (or last) attempt started."),
        sa.Column(
            "lease_expires_at",
            TIMESTAMP,
            comment="Local backend: the running attempt is lost unless its worker renews this first.",
        ),
        sa.Column("deadline_at", TIMESTAMP, comment="Local backend: the running attempt's deadline."),
        sa.Column(
            "active_deadline_seconds", sa.Integer(), comment="Per-attempt deadline; the default applies when NULL."
        ),
    ]
    for column in add:
        op.add_column("core_work_items", column)
    op.execute(
        "UPDATE core_work_items AS w SET total_attempts = GREATEST(w.attempt_count, "
        "COALESCE((SELECT max(e.attempt) FROM core_executions AS e WHERE e.work_item_id = w.id), 0))"
    )
    op.create_index(
        "ix_core_work_items_lease",
        "core_work_items",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'RUNNING'"),
    )
    op.drop_constraint(op.f("ck_core_executions_outcome"), "core_executions", type_="check")
    op.create_check_constraint(
        op.f("ck_core_executions_outcome"),
        "core_executions",
        "outcome IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'RELEASED')",
    )


def downgrade() -> None:
    op.execute("UPDATE core_executions SET outcome = 'CANCELLED' WHERE outcome = 'RELEASED'")
    op.drop_constraint(op.f("ck_core_executions_outcome"), "core_executions", type_="check")
    op.create_check_constraint(
        op.f("ck_core_executions_outcome"),
        "core_executions",
        "outcome IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
    )
    op.drop_index("ix_core_work_items_lease", table_name="core_work_items")
    for name in (
        "active_deadline_seconds",
        "deadline_at",
        "lease_expires_at",
        "started_at",
        "upstream_execution_id",
        "state_message",
        "state_reason",
        "total_attempts",
        "version",
    ):
        op.drop_column("core_work_items", name)
