"""``make demo``: the main job, end to end, on an embedded PostgreSQL with no cluster.

Enqueues the real FINRA weeks found in ``../shared/data/finra_otc/`` (or, when that folder is
absent, a small sample generated in FINRA's format) as chained ingest work items, runs the local
worker until idle, then prints the doctor's report and the most concentrated symbols (HHI).
Everything goes through the same services as ``spine work``, ``spine worker`` and ``spine doctor``.
A file's name carries the day FINRA published it; its trading week comes from FINRA's calendar.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from market_spine.config import load_settings
from market_spine.core.calendar import describe_week
from market_spine.core.partitions import Tier, weekly_file_name
from market_spine.core.stages import INGEST
from market_spine.core.states import WorkState
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db import migrate
from market_spine.db.engine import default_data_dir, make_engine, normalize_url, start_embedded
from market_spine.errors import SpineError
from market_spine.finra.sample import write_sample_week
from market_spine.finra.schedule import finra_calendar
from market_spine.services.doctor import DoctorOptions, check, report_as_dict
from market_spine.services.query import top_concentrated
from market_spine.services.queue import LocalQueue
from market_spine.services.worker import AttemptOutcome, Worker

DEMO_DATABASE = "spine_demo"
REAL_DATA = Path("..") / "shared" / "data" / "finra_otc"
_FILE_NAME = re.compile(r"finra_otc_weekly_(?P<tier>[a-z0-9_]+)_(?P<day>\d{8})\.csv$")


# The days FINRA published the two real OTC files; samples are generated for the same days.
PUBLICATION_DAYS = (date(2025, 12, 15), date(2025, 12, 22))


@dataclass(frozen=True)
class WeekFile:
    path: Path
    week: date  # the trading week (Monday)
    tier: Tier


def utcnow() -> datetime:
    return datetime.now(UTC)


def find_week_files(folder: Path) -> list[WeekFile]:
    """Weekly files named as FINRA names them (by publication day), each with the trading week
    FINRA published on that day."""
    calendar = finra_calendar()
    found = []
    for path in sorted(folder.glob("finra_otc_weekly_*.csv")):
        match = _FILE_NAME.search(path.name)
        if match:
            day = datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC).date()
            tier = Tier(match["tier"].upper())
            found.append(WeekFile(path.resolve(), calendar.newest_published_week(tier, day), tier))
    return found


def generate_sample(folder: Path) -> list[WeekFile]:
    """Sample files of every tier for the weeks FINRA published on :data:`PUBLICATION_DAYS`."""
    calendar = finra_calendar()
    files = []
    for day in PUBLICATION_DAYS:
        for tier in Tier:
            week = calendar.newest_published_week(tier, day)
            path = write_sample_week(folder / weekly_file_name(day, tier), week, tier, symbols=200, seed=7)
            files.append(WeekFile(path, week, tier))
    return files


def demo_engine() -> Engine:
    """A fresh ``spine_demo`` database: on the embedded server, or on SPINE_DATABASE_URL's server."""
    settings = load_settings()
    if settings.database_url:
        base = normalize_url(settings.database_url)
    else:
        data_dir = settings.data_dir or default_data_dir()
        print(f"PostgreSQL: embedded server, data in {data_dir}")
        base = start_embedded(data_dir)
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        # Constant identifiers only: the demo owns this database and recreates it on each run.
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DEMO_DATABASE}"'))
    admin.dispose()
    url = make_url(normalize_url(base)).set(database=DEMO_DATABASE).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine


def print_outcome(outcome: AttemptOutcome) -> None:
    partition = FinraPartition.model_validate_json(outcome.partition_key)
    stage = outcome.pipeline.rsplit(".", 1)[-1]
    detail = f" ({outcome.error})" if outcome.error else ""
    print(f"  {stage:<15} {partition.week} {partition.tier.value:<10} → {outcome.state.value}{detail}")


def main() -> int:
    started = time.perf_counter()
    folder = Path(os.environ.get("SPINE_DEMO_DATA", REAL_DATA))
    files = find_week_files(folder)
    scratch = None
    if files:
        print(f"Data: {len(files)} real FINRA weekly file(s) from {folder.resolve()}")
    else:
        scratch = tempfile.TemporaryDirectory(prefix="spine-demo-")
        files = generate_sample(Path(scratch.name))
        print(f"Data: {folder} not found; generated {len(files)} sample weeks in FINRA's format")
    engine = demo_engine()
    queue = LocalQueue(engine, utcnow)

    print("\n1. Enqueue (spine work enqueue … --chain)")
    for f in files:
        spec = WorkItemSpec(
            pipeline=INGEST,
            partition=FinraPartition(week=f.week, tier=f.tier),
            params={"file": str(f.path)},
            chain=True,
        )
        result = queue.enqueue(spec)
        print(f"  {result.name}: {'enqueued' if result.created else 'already enqueued'}")

    print("\n2. Work (spine worker --until-idle --concurrency 2)")
    report = Worker(engine, utcnow, on_outcome=print_outcome).run_until_idle(concurrency=2)
    complete = report.count(WorkState.COMPLETE)
    print(f"  {len(report.outcomes)} attempts, {complete} COMPLETE")

    tiers = tuple(sorted({f.tier for f in files}))
    count = max(sum(1 for f in files if f.tier is tier) for tier in tiers)
    # As of the day the newest file is due (FINRA's publication plus the grace): every week is expected.
    defaults = DoctorOptions(weeks=count, tiers=tiers)
    as_of = max(defaults.calendar.due(f.week, f.tier) for f in files)
    options = replace(defaults, as_of=as_of)
    print(
        f"\n3. Doctor (spine doctor finra.otc_transparency --weeks {count} --as-of {as_of}"
        + "".join(f" --tier {t.value}" for t in tiers)
        + ")"
    )
    doctor = report_as_dict(check(engine, options, utcnow().date()), options)
    verdict = "HEALTHY" if doctor["healthy"] else "GAPS FOUND"
    print(
        f"  {verdict}: {doctor['expected_partitions']} partitions expected, {doctor['missing_partitions']} missing, "
        f"{doctor['incomplete_partitions']} incomplete, {doctor['failed_work']} failed"
    )
    for gap in doctor["gaps"]:
        print(f"  - {gap['kind']}: {gap['remediation']}")

    print("\n4. Most concentrated symbols traded on 2+ venues, newest week of each tier (spine query hhi …)")
    for tier in tiers:
        week = max(f.week for f in files if f.tier is tier)
        rows = top_concentrated(engine, week, tier, limit=5, min_venues=2)
        print(f"  {tier.value}, week {describe_week(week)}:")
        for row in rows:
            print(f"    {row['symbol']:<8} HHI {row['hhi']:.4f}  venues {row['venue_count']}  volume {row['volume']:,}")

    engine.dispose()
    if scratch:
        scratch.cleanup()
    print(f"\nDone in {time.perf_counter() - started:.1f}s.")
    return 0 if doctor["healthy"] and complete == len(report.outcomes) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SpineError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
