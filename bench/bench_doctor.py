"""``spine doctor --weeks 12`` on a generated 5-year history of 3 tiers × 3 stages.

Run by ``python -m bench`` (``make bench``). The manifest holds 5 × 52 weeks × 3 tiers × 3
stages (2,340 rows), with some holes so the report has gaps to list. Three figures, medians of
repeated runs in the same process and database:

- baseline: one ``SELECT 1`` round trip on the same engine (the floor for any database question);
- the doctor service (``services.doctor.check``), as ``spine doctor`` calls it;
- ``spine doctor --weeks 12 --format json`` as a whole process, against ``spine --version``
  (the cost of starting Python and importing the CLI) as its baseline.

Target (issue 2): the doctor check ≤ 200 ms.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import insert

from bench.bench_ingest import throwaway_postgres
from market_spine.core.calendar import WEEK, week_of
from market_spine.core.partitions import DOMAIN, Tier, canonical_key, finra_partition
from market_spine.core.stages import STAGE_ORDER
from market_spine.db.schema import core_manifest
from market_spine.services.doctor import DoctorOptions, check

AS_OF = date(2025, 12, 22)
YEARS = 5
RUNS = 21
TARGET_MS = 200.0


def _median_ms(fn: Callable[[], object], runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def seed_history(engine: Engine) -> int:
    rows = []
    now = datetime(2025, 12, 23, tzinfo=UTC)
    newest = week_of(AS_OF)
    for i, week in enumerate(newest - WEEK * n for n in range(YEARS * 52 - 1, -1, -1)):
        for tier in Tier:
            if i % 97 == 5:  # a missing partition now and then
                continue
            stages = STAGE_ORDER[:2] if i % 89 == 3 else STAGE_ORDER  # and an incomplete chain
            for stage in stages:
                rows.append(
                    {
                        "domain": DOMAIN,
                        "partition_key": canonical_key(finra_partition(week, tier)),
                        "stage": stage.value,
                        "week": week,
                        "tier": tier.value,
                        "row_count": 5000,
                        "capture_id": f"{DOMAIN}:{tier.value}:{week}:{(week + timedelta(days=1)):%Y%m%d}",
                        "updated_at": now,
                    }
                )
    with engine.begin() as conn:
        conn.execute(insert(core_manifest), rows)
        conn.execute(text("ANALYZE core_manifest"))
    return len(rows)


def _process_ms(args: list[str], env: dict[str, str], runs: int = 7) -> float:
    spine = os.path.join(os.path.dirname(sys.executable), "spine")

    def once() -> None:
        subprocess.run([spine, *args], env=env, capture_output=True, check=False)

    return _median_ms(once, runs)


def main() -> None:
    with throwaway_postgres() as engine:
        count = seed_history(engine)
        options = DoctorOptions(weeks=12, as_of=AS_OF)
        report = check(engine, options, AS_OF)
        print(f"history: {count:,} manifest rows ({YEARS} years × 3 tiers × 3 stages, with holes)")
        print(f"doctor --weeks 12: {report.expected} expected, {report.gap_count} gaps in the window")

        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        baseline = _median_ms(ping)
        doctor = _median_ms(lambda: check(engine, options, AS_OF))
        verdict = "meets" if doctor <= TARGET_MS else "MISSES"
        print(f"  baseline SELECT 1 round trip : {baseline:8.2f} ms")
        print(
            f"  doctor check (service)       : {doctor:8.2f} ms  = {doctor / baseline:6.1f}× baseline; "
            f"target ≤ {TARGET_MS:.0f} ms: {verdict}"
        )

        env = dict(os.environ, SPINE_DATABASE_URL=engine.url.render_as_string(hide_password=False))
        startup = _process_ms(["--version"], env)
        cli = _process_ms(["doctor", DOMAIN, "--weeks", "12", "--as-of", AS_OF.isoformat(), "--format", "json"], env)
        print(f"  spine --version (process)    : {startup:8.2f} ms")
        print(
            f"  spine doctor --weeks 12      : {cli:8.2f} ms  = {cli / startup:6.2f}× process start-up; "
            f"{cli - startup:.0f} ms beyond start-up"
        )
