"""Revision 0003 adds what one lifecycle needs of ``core_work_items`` (a version for compare-and-set
writes, leases and deadlines of local attempts, the state's reason, the upstream run a chained item
reads) and lets an execution be RELEASED; existing rows keep their history."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from market_spine.db import migrate


def _to(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_0003_counts_the_attempts_already_made_and_allows_released_executions(
    empty_engine: Engine,
) -> None:
    _to(empty_engine, "0002")
    with empty_engine.begin() as conn:
        item = conn.execute(
            text(
                "INSERT INTO core_work_items (domain, pipeline, partition_key, state, attempt_count) "
                "VALUES ('finra.otc_transparency', 'finra.otc_transparency.ingest_week', "
                '\'{"tier":"OTC","week":"2025-11-10"}\', \'COMPLETE\', 1) RETURNING id'
            )
        ).scalar_one()
        for attempt, outcome in ((1, "FAILED"), (2, "FAILED"), (3, "SUCCEEDED")):  # an admin retry reset the count
            conn.execute(
                text(
                    "INSERT INTO core_executions (execution_id, work_item_id, domain, pipeline, partition_key, "
                    "attempt, backend, outcome) VALUES (:e, :i, 'finra.otc_transparency', 'p', 'k', :a, 'local', :o)"
                ),
                {"e": f"e{attempt}", "i": item, "a": attempt, "o": outcome},
            )
    _to(empty_engine, "0003")
    with empty_engine.begin() as conn:
        row = conn.execute(
            text("SELECT version, total_attempts, attempt_count, lease_expires_at FROM core_work_items")
        ).one()
        assert tuple(row) == (0, 3, 1, None)
        conn.execute(text("UPDATE core_executions SET outcome = 'RELEASED' WHERE execution_id = 'e2'"))
    with empty_engine.begin() as conn:
        try:
            conn.execute(text("UPDATE core_executions SET outcome = 'LOST' WHERE execution_id = 'e1'"))
            raise AssertionError("an unknown outcome was accepted")
        except IntegrityError:
            pass
    _to(empty_engine, "0002", down=True)
    with empty_engine.connect() as conn:
        outcomes = conn.execute(text("SELECT outcome FROM core_executions ORDER BY attempt")).scalars().all()
        assert outcomes == ["FAILED", "CANCELLED", "SUCCEEDED"]
        columns = conn.execute(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'core_work_items'")
        ).scalars()
        assert "version" not in set(columns)
