"""``spine db status|stop|reset`` (issue 10): the embedded PostgreSQL can be inspected, stopped and
deleted; ``reset`` asks first (``--yes`` for scripts, a refusal when nobody can answer); none of
them ever stops or drops the database ``SPINE_DATABASE_URL`` names."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from market_spine.db import migrate
from market_spine.db.engine import stop_embedded
from tests.support.cli import Spine


@pytest.fixture
def embedded(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Spine, Path]]:
    """``spine`` on its default database, the embedded server, in a data folder of this test's own
    (not under pytest's basetemp, which pytest prunes while a server may still run)."""
    folder = Path(tempfile.mkdtemp(prefix="spine-db-test-"))
    data_dir = folder / "pgdata"
    monkeypatch.delenv("SPINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("SPINE_DATA_DIR", str(data_dir))
    try:
        yield Spine(capsys, monkeypatch), data_dir
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(folder, ignore_errors=True)


def test_status_stop_and_reset_of_the_embedded_server(embedded: tuple[Spine, Path]) -> None:
    spine, data_dir = embedded
    fresh = spine("db", "status")
    assert (fresh.code, fresh.err) == (0, "")
    assert fresh.out == (
        f"database: embedded PostgreSQL in {data_dir}\nserver: not created yet (the first spine command creates it)\n"
    )

    assert spine("db", "current").code == 0  # the first command starts (and migrates) it
    running = spine("db", "status")
    lines = running.out.splitlines()
    assert lines[0] == f"database: embedded PostgreSQL in {data_dir}"
    assert lines[1].startswith("size: ") and lines[1].endswith(" MB")
    assert lines[2].startswith("server: running, pid ")
    assert lines[3] == f"schema: revision {migrate.head_revision()} (this spine's newest: {migrate.head_revision()})"
    assert running.err == ""  # status starts nothing, so it does not announce the server

    stopped = spine("db", "stop")
    assert stopped.out == f"stopped the embedded PostgreSQL in {data_dir}\n"
    assert not (data_dir / "postmaster.pid").exists()
    assert spine("db", "status").out.splitlines()[2] == "server: stopped (the next spine command starts it)"
    assert spine("db", "stop").out == f"not running: {data_dir}\n"

    # Nobody to ask (stdin is not a terminal under pytest): refused, nothing deleted.
    refused = spine("db", "reset")
    assert refused.code == 2
    assert refused.err == (
        f"spine: error: spine db reset deletes {data_dir} and everything in it: pass --yes to confirm\n"
    )
    assert (data_dir / "PG_VERSION").is_file()

    assert spine("db", "current").code == 0  # running again: reset stops it before deleting
    reset = spine("db", "reset", "--yes")
    assert (reset.code, reset.out) == (0, f"deleted {data_dir}; the next spine command starts an empty database\n")
    assert not data_dir.exists()
    assert spine("db", "status").out.endswith("server: not created yet (the first spine command creates it)\n")


def test_reset_asks_on_a_terminal_and_no_keeps_everything(
    embedded: tuple[Spine, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spine, data_dir = embedded
    assert spine("db", "current").code == 0
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("typer.confirm", lambda question, default: question.startswith("Delete") and False)
    declined = spine("db", "reset")
    assert (declined.code, declined.out, declined.err) == (1, "", "nothing deleted\n")
    assert (data_dir / "PG_VERSION").is_file()


def test_reset_never_deletes_a_folder_that_is_not_a_database(embedded: tuple[Spine, Path]) -> None:
    """SPINE_DATA_DIR set to a folder of one's own (no PG_VERSION, which initdb writes) is left alone."""
    spine, data_dir = embedded
    data_dir.mkdir(parents=True)
    (data_dir / "notes.txt").write_text("mine")
    kept = spine("db", "reset", "--yes")
    assert (kept.code, kept.out) == (0, f"nothing to delete: no embedded PostgreSQL in {data_dir}\n")
    assert (data_dir / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("action", ["stop", "reset"])
def test_a_database_named_by_spine_database_url_is_never_stopped_or_dropped(
    spine: Spine, database_url: str, action: str
) -> None:
    result = spine("db", action, "--yes") if action == "reset" else spine("db", action)
    assert result.code == 2
    assert result.err.startswith(f"spine: error: spine db {action} manages only the embedded PostgreSQL, ")
    assert "spine never stops or drops a database it did not create" in result.err
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
    status = spine("db", "status")
    assert status.code == 0
    assert status.out.splitlines()[0].startswith("database: SPINE_DATABASE_URL: ")
    head = migrate.head_revision()
    assert status.out.splitlines()[1] == f"schema: revision {head} (this spine's newest: {head})"
