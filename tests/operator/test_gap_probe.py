"""The operator's periodic gap probe: the doctor's count of missing partitions, as a metric value,
on the same FINRA publication calendar and grace (``SPINE_PUBLICATION_GRACE_DAYS``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from market_spine.config import Settings
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.stages import INGEST
from market_spine.finra.sample import write_sample_week
from market_spine.finra.schedule import finra_calendar
from market_spine.operator.runner import doctor_gap_probe
from market_spine.services.doctor import DoctorOptions, check
from market_spine.services.runs import run_recorded


def test_probe_counts_missing_partitions_over_the_window(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(gap_check_weeks=2)
    probe = doctor_gap_probe(engine, settings)
    assert probe() == {DOMAIN: 6}  # each tier's 2 newest due weeks, nothing ingested yet

    today = datetime.now(UTC).date()
    newest = finra_calendar(grace_days=1).newest_published_week(Tier.OTC, today, with_grace=True)
    path = write_sample_week(tmp_path / "w.csv", newest, Tier.OTC, symbols=5, seed=1)
    run_recorded(engine, INGEST, newest, Tier.OTC, params={"file": str(path)}, clock=lambda: datetime.now(UTC))
    assert probe() == {DOMAIN: 5}


def test_probe_and_doctor_agree_for_any_grace(engine: Engine) -> None:
    today = datetime.now(UTC).date()
    for grace in (0, 1, 9, 40):
        probe = doctor_gap_probe(engine, Settings(gap_check_weeks=3, publication_grace_days=grace))
        report = check(engine, DoctorOptions(weeks=3, grace_days=grace, stale_after_days=None), today)
        expected = finra_calendar(grace).expected_partitions(today, 3)
        assert probe() == {DOMAIN: len(report.missing)} == {DOMAIN: len(expected)}
        assert [(g.week, g.tier) for g in report.missing] == expected
