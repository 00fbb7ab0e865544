"""The operator's periodic gap probe: the doctor's count of missing partitions, as a metric value."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from market_spine.config import Settings
from market_spine.core.calendar import last_week_ending_on_or_before
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.stages import INGEST
from market_spine.finra.sample import write_sample_week
from market_spine.operator.runner import doctor_gap_probe
from market_spine.services.runs import run_recorded


def test_probe_counts_missing_partitions_over_the_window(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(gap_check_weeks=2)
    probe = doctor_gap_probe(engine, settings)
    assert probe() == {DOMAIN: 6}  # 2 weeks x 3 tiers, nothing ingested yet

    newest = last_week_ending_on_or_before(datetime.now(UTC).date())
    path = write_sample_week(tmp_path / "w.csv", newest, Tier.OTC, symbols=5, seed=1)
    run_recorded(engine, INGEST, newest, Tier.OTC, params={"file": str(path)}, clock=lambda: datetime.now(UTC))
    assert probe() == {DOMAIN: 5}

    lagged = doctor_gap_probe(engine, Settings(gap_check_weeks=2, publication_lag_days={Tier.NMS_TIER_1: 14}))
    # With a 14-day lag neither week of NMS_TIER_1 is expected yet: 4 expected, 1 present.
    assert lagged() == {DOMAIN: 3}
