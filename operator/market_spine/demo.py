"""``make demo``: the main job, end to end, in the database every ``spine`` command uses.

Enqueues the real FINRA weeks found in ``../shared/data/finra_otc/`` (or, when that folder is
absent, sample files generated in FINRA's format next to the embedded server's data) as chained
ingest work items, runs the local worker until idle, then prints the doctor's report, the most
concentrated symbols, and the ``spine`` commands that show the same things afterwards.

The database is ``spine``'s own: ``SPINE_DATABASE_URL`` (migrated like ``spine db upgrade``), else
the embedded PostgreSQL in the per-user data folder, which keeps running for the next command
(``spine db status|stop|reset``). The demo creates and drops no database and deletes nothing: run
again, it finds its work items enqueued and complete and says so. Everything goes through the same
services as ``spine work``, ``spine worker``, ``spine doctor`` and ``spine query``. A file's name
carries the day FINRA published it; its trading week comes from FINRA's calendar.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from market_spine.config import Settings, load_settings
from market_spine.core.calendar import describe_week
from market_spine.core.partitions import DOMAIN, Tier, weekly_file_name
from market_spine.core.stages import INGEST
from market_spine.core.states import WorkState
from market_spine.core.wording import plural
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db.engine import describe, first_line, normalize_url
from market_spine.errors import DatabaseUnavailable, SpineError
from market_spine.finra.sample import write_sample_week
from market_spine.finra.schedule import finra_calendar
from market_spine.services import database
from market_spine.services.doctor import DoctorOptions, check, report_as_dict
from market_spine.services.query import HhiSort, hhi
from market_spine.services.queue import LocalQueue
from market_spine.services.worker import AttemptOutcome, Worker, WorkerOptions

REAL_DATA = Path("..") / "shared" / "data" / "finra_otc"
_FILE_NAME = re.compile(r"finra_otc_weekly_(?P<tier>[a-z0-9_]+)_(?P<day>\d{8})\.csv$")

# The days FINRA published the two real OTC files; samples are generated for the same days.
PUBLICATION_DAYS = (date(2025, 12, 15), date(2025, 12, 22))
TOP = 5  # symbols per tier in the "most concentrated" list
MIN_VENUES = 2


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


def sample_folder(settings: Settings) -> Path:
    """Where generated samples live: beside the embedded server's data, so work items that name
    them stay runnable (``spine work retry``) and a second run finds them."""
    return database.data_dir(settings).parent / "demo-sample"


def generate_sample(folder: Path) -> list[WeekFile]:
    """Sample files of every tier for the weeks FINRA published on :data:`PUBLICATION_DAYS`
    (deterministic: a second run rewrites the same bytes)."""
    calendar = finra_calendar()
    files = []
    for day in PUBLICATION_DAYS:
        for tier in Tier:
            week = calendar.newest_published_week(tier, day)
            path = write_sample_week(folder / weekly_file_name(day, tier), week, tier, symbols=200, seed=7)
            files.append(WeekFile(path, week, tier))
    return files


def spine_command() -> str:
    """How to run ``spine`` from here: this interpreter's script, relative when it is below the
    current folder (``.venv/bin/spine`` from a checkout), else ``spine``."""
    script = Path(sys.executable).parent / "spine"
    if not script.exists():
        return "spine"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def open_database(settings: Settings) -> Engine:
    """``spine``'s own database, migrated: ``SPINE_DATABASE_URL``'s, else the embedded one."""
    if settings.database_url:
        print(f"Database: SPINE_DATABASE_URL ({describe(normalize_url(settings.database_url))})")
        before, after = database.upgrade(settings)
        print(f"  schema {'already at revision ' + str(after) if before == after else f'upgraded to {after}'}")
    else:
        print(f"Database: the embedded PostgreSQL in {database.data_dir(settings)} (spine's default)")
    return database.open_engine(settings)


def print_outcome(outcome: AttemptOutcome) -> None:
    partition = FinraPartition.model_validate_json(outcome.partition_key)
    stage = outcome.pipeline.rsplit(".", 1)[-1]
    detail = f" ({outcome.error})" if outcome.error else ""
    print(f"  {stage:<15} {partition.week} {partition.tier.value:<10} → {outcome.state.value}{detail}")


def _weeks_and_tiers(files: Sequence[WeekFile]) -> str:
    """``2 weeks of each of 3 tiers (6 files)``: the tiers' weeks differ (FINRA's delays do)."""
    tiers = {f.tier for f in files}
    weeks = max(sum(1 for f in files if f.tier is tier) for tier in tiers)
    return f"{plural(weeks, 'week')} of each of {plural(len(tiers), 'tier')} ({plural(len(files), 'file')})"


def main() -> int:
    started = time.perf_counter()
    settings = load_settings()
    spine = spine_command()
    folder = Path(os.environ.get("SPINE_DEMO_DATA", REAL_DATA))
    files = find_week_files(folder)
    if files:
        print(f"Data: {len(files)} real FINRA weekly file(s) from {folder.resolve()}")
    else:
        target = sample_folder(settings)
        files = generate_sample(target)
        print(f"Data: {folder} not found; sample files in FINRA's format, {_weeks_and_tiers(files)}, in {target}")
    engine = open_database(settings)
    queue = LocalQueue(engine, utcnow)

    print(f"\n1. Enqueue ({spine} work enqueue … --chain)")
    for f in files:
        spec = WorkItemSpec(
            pipeline=INGEST,
            partition=FinraPartition(week=f.week, tier=f.tier),
            params={"file": str(f.path)},
            chain=True,
        )
        result = queue.enqueue(spec)
        print(f"  {result.name}: {'enqueued' if result.created else f'already enqueued, {result.state}'}")

    print(f"\n2. Work ({spine} worker --until-idle --concurrency 2)")
    worker_options = WorkerOptions.from_settings(settings, until_idle=True)  # SPINE_WORKER_* apply here too
    worker = Worker(engine, utcnow, on_outcome=print_outcome, options=worker_options)
    report = worker.run_until_idle(concurrency=2)
    complete = report.count(WorkState.COMPLETE)
    if report.outcomes:
        print(f"  {len(report.outcomes)} attempts, {complete} COMPLETE")
    else:
        done = len(queue.list([WorkState.COMPLETE], limit=10_000))
        print(f"  nothing to run: already done ({done} work items COMPLETE in this database)")

    tiers = tuple(sorted({f.tier for f in files}))
    count = max(sum(1 for f in files if f.tier is tier) for tier in tiers)
    # As of the day the newest file is due (FINRA's publication plus the grace): every week is expected.
    defaults = DoctorOptions(weeks=count, tiers=tiers, grace_days=settings.publication_grace_days)
    as_of = max(defaults.calendar.due(f.week, f.tier) for f in files)
    options = replace(defaults, as_of=as_of)
    doctor_args = [DOMAIN, "--weeks", str(count), "--as-of", as_of.isoformat()]
    doctor_args += [arg for t in tiers for arg in ("--tier", t.value)]
    print(f"\n3. Doctor ({spine} doctor {shlex.join(doctor_args)})")
    doctor = report_as_dict(check(engine, options, utcnow().date()), options)
    verdict = "HEALTHY" if doctor["healthy"] else "GAPS FOUND"
    print(
        f"  {verdict}: {plural(doctor['expected_partitions'], 'partition')} expected, "
        f"{doctor['missing_partitions']} missing, {doctor['incomplete_partitions']} incomplete, "
        f"{doctor['failed_work']} failed"
    )
    for gap in doctor["gaps"]:
        print(f"  - {gap['kind']}:\n    {gap['remediation']}")

    print(f"\n4. Most concentrated symbols traded on {MIN_VENUES}+ venues, newest week of each tier")
    for tier in tiers:
        week = max(f.week for f in files if f.tier is tier)
        args = ["--week", week.isoformat(), "--tier", tier.value, "--sort", "hhi"]
        print(f"  {spine} query hhi {shlex.join(args)} --limit {TOP} --min-venues {MIN_VENUES}")
        print(f"  {tier.value}, week {describe_week(week)}:")
        rows = hhi(engine, week, tier, sort=HhiSort.HHI, min_venues=MIN_VENUES, limit=TOP)
        for row in rows:
            print(f"    {row['symbol']:<8} HHI {row['hhi']:.4f}  venues {row['venue_count']}  volume {row['volume']:,}")

    engine.dispose()
    print(f"\nDone in {time.perf_counter() - started:.1f}s. The results are in spine's database; see them with:")
    print(f"  {spine} work list")
    print(f"  {spine} query hhi --sort hhi --limit 5 --min-venues 2")
    print(f"  {spine} query tier-share")
    print(f"  {spine} doctor {shlex.join(doctor_args)}")
    if not settings.database_url:
        print(f"The embedded PostgreSQL keeps running: {spine} db status | db stop | db reset (start over)")
    return 0 if doctor["healthy"] and complete == len(report.outcomes) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SpineError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OperationalError as exc:  # the database went away mid-run
        lost = DatabaseUnavailable(f"lost the database connection: {first_line(exc.orig or exc)}")
        print(f"demo: error: {lost}", file=sys.stderr)
        sys.exit(lost.exit_code)
