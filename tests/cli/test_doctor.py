"""``spine doctor`` beyond the seed scenarios: restatements half-way through, publication lag,
and the Prometheus exposition."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from market_spine.core.partitions import Tier
from market_spine.finra.sample import write_sample_week
from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"
DOCTOR = ("doctor", "finra.otc_transparency", "--as-of", "2025-12-15", "--weeks", "1", "--tier", "OTC")


def test_a_restatement_ingested_without_chain_makes_later_stages_behind(spine: Spine, tmp_path: Path) -> None:
    first = write_sample_week(tmp_path / "a.csv", date(2025, 12, 15), Tier.OTC, symbols=10, seed=1)
    second = write_sample_week(tmp_path / "b.csv", date(2025, 12, 15), Tier.OTC, symbols=12, seed=2)
    run = ("run", INGEST, "--week-ending", "2025-12-15", "--tier", "OTC")
    assert spine(*run, "--file", str(first), "--capture-date", "2025-12-15", "--chain").code == 0
    assert spine(*DOCTOR).code == 0

    assert spine(*run, "--file", str(second), "--capture-date", "2025-12-16").code == 0  # no --chain
    report = spine(*DOCTOR, "--format", "json")
    assert report.code == 1
    (gap,) = report.json()["gaps"]
    assert gap["kind"] == "incomplete_chain"
    assert gap["present_stages"] == ["RAW"]
    assert gap["missing_stages"] == ["NORMALIZED", "CALC"]

    fix = gap["remediation"].split()
    assert spine(*fix[1:]).code == 0
    assert spine(*DOCTOR).code == 0


def test_publication_lag_leaves_unpublished_weeks_out(spine: Spine) -> None:
    window = ("doctor", "finra.otc_transparency", "--as-of", "2025-12-22", "--weeks", "4", "--format", "json")
    everything = spine(*window).json()
    assert everything["expected_partitions"] == 12
    lagged = spine(*window, "--lag", "NMS_TIER_1=14", "--lag", "OTC=7").json()
    # NMS_TIER_1 loses its two newest weeks (12-15, 12-22), OTC its newest (12-22).
    assert lagged["expected_partitions"] == 12 - 2 - 1
    missing = {(g["week_ending"], g["tier"]) for g in lagged["gaps"]}
    assert ("2025-12-22", "OTC") not in missing
    assert ("2025-12-15", "NMS_TIER_1") not in missing
    assert ("2025-12-15", "OTC") in missing


def test_bad_lag_is_a_usage_error(spine: Spine) -> None:
    result = spine("doctor", "finra.otc_transparency", "--lag", "OTC:7")
    assert result.code == 2
    assert "--lag takes TIER=DAYS" in result.err


def test_prometheus_format(spine: Spine) -> None:
    result = spine(
        "doctor", "finra.otc_transparency", "--as-of", "2025-12-22", "--weeks", "2", "--format", "prometheus"
    )
    assert result.code == 1
    from prometheus_client.parser import text_string_to_metric_families

    values = {
        (family.name, sample.labels["domain"]): sample.value
        for family in text_string_to_metric_families(result.out)
        for sample in family.samples
    }
    assert values[("market_spine_partition_gaps", "finra.otc_transparency")] == 6
    assert values[("market_spine_failed_work", "finra.otc_transparency")] == 0
    assert values[("market_spine_expected_partitions", "finra.otc_transparency")] == 6
