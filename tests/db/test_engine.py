"""Database URLs a user would paste, the embedded default, and migrations that are safe to repeat."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from market_spine.db import migrate
from market_spine.db.engine import describe, make_engine, normalize_url, stop_embedded
from market_spine.db.schema import CAPTURED_TABLES, latest_view_name, metadata
from market_spine.errors import UsageError
from tests.support.cli import Spine


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://user:pass@db.example:5432/spine", "postgresql+psycopg://user:pass@db.example:5432/spine"),
        ("postgres://user:pass@db.example/spine", "postgresql+psycopg://user:pass@db.example/spine"),
        ("postgresql+psycopg2://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
        (
            "postgresql://postgres@/postgres?host=/run/postgresql",
            "postgresql+psycopg://postgres@/postgres?host=%2Frun%2Fpostgresql",
        ),
        ("  postgresql://u@h/d\n", "postgresql+psycopg://u@h/d"),
    ],
)
def test_normalize_url_accepts_standard_forms(given: str, expected: str) -> None:
    assert normalize_url(given) == expected
    assert make_url(normalize_url(given)).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("bad", ["mysql://u@h/d", "sqlite:///x.db", "not a url"])
def test_normalize_url_refuses_non_postgres(bad: str) -> None:
    with pytest.raises(UsageError, match="SPINE_DATABASE_URL"):
        normalize_url(bad)


def test_describe_never_shows_the_password() -> None:
    assert describe("postgresql://u:hunter2@db:5433/spine") == "db:5433/spine"
    assert describe("postgresql://u@/spine?host=/tmp/sock") == "/tmp/sock/spine"


def test_libpq_socket_uri_connects(pg_admin_url: str) -> None:
    # The embedded server listens only on a Unix socket, so its URI is the libpq ?host= form.
    assert "host=" in pg_admin_url
    engine = make_engine(pg_admin_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_upgrade_is_idempotent_and_creates_the_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    head = migrate.head_revision()
    assert migrate.upgrade(engine) == (head, head)  # the template is already at head: a no-op
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names
    views = set(inspect(engine).get_view_names())
    assert {latest_view_name(t) for t in CAPTURED_TABLES} <= views
    checks = {c["name"] for c in inspect(engine).get_check_constraints("core_work_items")}
    assert "ck_core_work_items_state" in checks
    uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("core_work_items")}
    assert ("domain", "pipeline", "partition_key") in uniques
    engine.dispose()


def test_schema_matches_the_models_after_migrating(database_url: str) -> None:
    """Alembic's autogenerate sees no difference: the migrations and db/schema.py agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_state_check_constraint_refuses_unknown_states(engine: object) -> None:
    from sqlalchemy import Engine
    from sqlalchemy.exc import IntegrityError

    from market_spine.db.schema import core_work_items

    assert isinstance(engine, Engine)
    with pytest.raises(IntegrityError, match="ck_core_work_items_state"), engine.begin() as conn:
        conn.execute(core_work_items.insert().values(domain="d", pipeline="p", partition_key="{}", state="DONE"))


def test_db_upgrade_command_reports_revision(spine: Spine) -> None:
    result = spine("db", "upgrade")
    assert result.code == 0, result.err
    assert result.out.strip() == f"database already at revision {migrate.head_revision()}"


def test_embedded_default_says_where_its_data_lives(
    spine: Spine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SPINE_DATABASE_URL")
    data_dir = tmp_path / "embedded"
    monkeypatch.setenv("SPINE_DATA_DIR", str(data_dir))
    try:
        result = spine("work", "list", "--format", "json")
    finally:
        stop_embedded(data_dir)
    assert result.code == 0, result.err
    assert result.json() == []
    assert f"using the embedded PostgreSQL in {data_dir}" in result.err
    assert (data_dir / "PG_VERSION").is_file()


def test_commands_refuse_an_unmigrated_database_with_a_retryable_error(
    spine: Spine, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from sqlalchemy import create_engine

    name = f"spine_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        monkeypatch.setenv("SPINE_DATABASE_URL", url)
        refused = spine("work", "list")
        assert refused.code == 7  # SchemaMismatch: retryable, so a Job started mid-upgrade retries
        assert "schema is at revision none" in refused.err
        assert "run `spine db upgrade`" in refused.err
        upgraded = spine("db", "upgrade")
        assert upgraded.code == 0
        assert f"upgraded from empty to {migrate.head_revision()}" in upgraded.out
        assert spine("work", "list").code == 0
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_concurrent_first_commands_on_a_fresh_data_folder_all_succeed(tmp_path: Path) -> None:
    """Four commands started together on a data folder that does not exist yet: one initializes and
    starts the server, all of them find (or create) the `spine` database, none fails on the race."""
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    env |= {"SPINE_DATA_DIR": str(data_dir), "SPINE_BACKEND": "local"}
    spine_bin = str(Path(sys.executable).parent / "spine")
    try:
        started = [
            subprocess.Popen(
                [spine_bin, "work", "list", "--format", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(4)
        ]
        results = [(p.wait(180), *(s.decode() for s in p.communicate())) for p in started]
    finally:
        stop_embedded(data_dir)
    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == "[]"
        assert "Traceback" not in err
