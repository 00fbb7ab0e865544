"""``spine doctor`` beyond the seed scenarios: restatements half-way through, FINRA's publication
calendar (acceptance criterion 2 of issue 8), the grace setting, retired settings, and the
Prometheus exposition."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier
from market_spine.finra.sample import write_sample_week
from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"
# The OTC week of 2025-11-10 was published on Monday 2025-12-15: with the default grace of one
# day it is the newest OTC week the doctor expects on 2025-12-16.
DOCTOR = ("doctor", "finra.otc_transparency", "--as-of", "2025-12-16", "--weeks", "1", "--tier", "OTC")


def test_a_restatement_ingested_without_chain_makes_later_stages_behind(spine: Spine, tmp_path: Path) -> None:
    first = write_sample_week(tmp_path / "a.csv", date(2025, 11, 10), Tier.OTC, symbols=10, seed=1)
    second = write_sample_week(tmp_path / "b.csv", date(2025, 11, 10), Tier.OTC, symbols=12, seed=2)
    run = ("run", INGEST, "--week", "2025-11-10", "--tier", "OTC")
    assert spine(*run, "--file", str(first), "--capture-date", "2025-12-15", "--chain").code == 0
    assert spine(*DOCTOR).code == 0

    assert spine(*run, "--file", str(second), "--capture-date", "2025-12-16").code == 0  # no --chain
    report = spine(*DOCTOR, "--format", "json")
    assert report.code == 1
    (gap,) = report.json()["gaps"]
    assert gap["kind"] == "incomplete_chain"
    assert (gap["week"], gap["tier"], gap["published_on"]) == ("2025-11-10", "OTC", "2025-12-15")
    assert gap["present_stages"] == ["RAW"]
    assert gap["missing_stages"] == ["NORMALIZED", "CALC"]

    fix = gap["remediation"].split()
    assert spine(*fix[1:]).code == 0
    assert spine(*DOCTOR).code == 0


def _missing(spine: Spine, *args: str) -> list[tuple[str, str, str]]:
    result = spine("doctor", "finra.otc_transparency", "--weeks", "2", "--format", "json", *args)
    assert result.code == 1, result.err
    report = result.json()
    assert report["schema_version"] == 2
    assert all(g["kind"] == "missing_partition" for g in report["gaps"])
    assert report["expected_partitions"] == len(report["gaps"])
    return [(g["week"], g["tier"], g["published_on"]) for g in report["gaps"]]


def test_expected_partitions_follow_finras_calendar_over_a_holiday(spine: Spine) -> None:
    """Acceptance criterion 2: exact weeks and publication days. Martin Luther King Jr. Day
    (Monday 2026-01-19) moves the publication of the Tier 1 week of 2025-12-29 and of the Tier 2
    and OTC week of 2025-12-15 to Tuesday 2026-01-20; with the default grace of one day they are
    expected from Wednesday 2026-01-21."""
    on_tuesday = _missing(spine, "--as-of", "2026-01-20")
    assert on_tuesday == [
        ("2025-12-01", "NMS_TIER_2", "2026-01-05"),
        ("2025-12-01", "OTC", "2026-01-05"),
        ("2025-12-08", "NMS_TIER_2", "2026-01-12"),
        ("2025-12-08", "OTC", "2026-01-12"),
        ("2025-12-15", "NMS_TIER_1", "2026-01-05"),
        ("2025-12-22", "NMS_TIER_1", "2026-01-12"),
    ]
    on_wednesday = _missing(spine, "--as-of", "2026-01-21")
    assert on_wednesday == [
        ("2025-12-08", "NMS_TIER_2", "2026-01-12"),
        ("2025-12-08", "OTC", "2026-01-12"),
        ("2025-12-15", "NMS_TIER_2", "2026-01-20"),
        ("2025-12-15", "OTC", "2026-01-20"),
        ("2025-12-22", "NMS_TIER_1", "2026-01-12"),
        ("2025-12-29", "NMS_TIER_1", "2026-01-20"),
    ]
    # Without a grace, a week is expected on its publication day itself.
    same_day = _missing(spine, "--as-of", "2026-01-20", "--grace-days", "0", "--tier", "NMS_TIER_1")
    assert same_day == [("2025-12-22", "NMS_TIER_1", "2026-01-12"), ("2025-12-29", "NMS_TIER_1", "2026-01-20")]


def test_the_grace_setting_delays_expectations(spine: Spine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINE_PUBLICATION_GRACE_DAYS", "3")
    # Published 2025-12-15; with three days' grace expected from 2025-12-18.
    assert _missing(spine, "--as-of", "2025-12-17", "--tier", "OTC")[-1][0] == "2025-11-03"
    assert _missing(spine, "--as-of", "2025-12-18", "--tier", "OTC")[-1][0] == "2025-11-10"
    report = spine("doctor", "finra.otc_transparency", "--as-of", "2025-12-18", "--format", "json").json()
    assert report["grace_days"] == 3


@pytest.mark.parametrize("name", ["SPINE_WEEK_ENDING_WEEKDAY", "SPINE_PUBLICATION_LAG_DAYS"])
@pytest.mark.parametrize(
    "command",
    [
        ("doctor", "finra.otc_transparency"),
        ("work", "list"),
        ("run", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api"),
    ],
)
def test_retired_calendar_settings_fail_every_command_naming_the_new_one(
    spine: Spine, monkeypatch: pytest.MonkeyPatch, name: str, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv(name, "0")
    result = spine(*command)
    assert result.code == 2
    assert result.out == ""
    assert result.err == (
        f"spine: error: {name} is no longer supported: weeks are FINRA trading weeks and are expected by FINRA's "
        "publication calendar; unset it and use SPINE_PUBLICATION_GRACE_DAYS (days after FINRA's first "
        "publication before a week is expected, default 1)\n"
    )


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
