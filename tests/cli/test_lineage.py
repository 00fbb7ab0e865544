"""Lineage (issue 9, finding 3's stale results, acceptance criterion 3): every stage's manifest row
records the execution (and capture) it was computed from, and the doctor reports a stage computed
from an older load of its input, with the command that brings it up to date.

On the main branch before issue 9 (06c5ce7) the manifest had no lineage: after a replayed ingest
of the same capture, NORMALIZED and CALC held the same capture id as RAW and the doctor said
HEALTHY (exit 0) while RAW held 6 rows and the later stages the previous load's."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import Table, create_engine, func, select

from market_spine.core.partitions import Tier
from market_spine.db.schema import core_manifest, normalized, venue_volume
from market_spine.finra.sample import render_records, sample_records, write_sample_week
from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"
NORMALIZE = "finra.otc_transparency.normalize_week"
COMPUTE = "finra.otc_transparency.compute_week"
WEEK = date(2025, 11, 10)  # OTC, first published 2025-12-15: expected from 2025-12-16
DOCTOR = ("doctor", "finra.otc_transparency", "--as-of", "2025-12-16", "--weeks", "1", "--tier", "OTC")
PARTITION = ("--week", "2025-11-10", "--tier", "OTC")


def _manifest(database_url: str) -> dict[str, tuple[int, str, str | None, str | None, str | None]]:
    """stage → (rows, capture, execution, upstream execution, upstream capture)."""
    engine = create_engine(database_url)
    m = core_manifest.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(m.stage, m.row_count, m.capture_id, m.execution_id, m.upstream_execution_id, m.upstream_capture_id)
        ).all()
    engine.dispose()
    return {row[0]: tuple(row[1:]) for row in rows}


def _count(database_url: str, table: Table) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return int(total)


def test_each_stage_records_what_it_was_computed_from(spine: Spine, spine_env: str, tmp_path: Path) -> None:
    week = write_sample_week(tmp_path / "week.csv", WEEK, Tier.OTC, symbols=10, seed=1)
    assert spine("run", INGEST, *PARTITION, "--file", str(week), "--capture-date", "2025-12-16", "--chain").code == 0
    stages = _manifest(spine_env)
    capture = "finra.otc_transparency:OTC:2025-11-10:20251216"
    raw_run, normalize_run = stages["RAW"][2], stages["NORMALIZED"][2]
    assert stages["RAW"][1:] == (capture, raw_run, None, None)  # ingest reads a source, not a stage
    assert stages["NORMALIZED"][1:] == (capture, normalize_run, raw_run, capture)
    assert stages["CALC"][1] == capture
    assert stages["CALC"][3:] == (normalize_run, capture)
    assert len({raw_run, normalize_run, stages["CALC"][2]}) == 3


def test_a_replayed_ingest_leaves_later_stages_stale_and_the_doctor_says_so(
    spine: Spine, spine_env: str, tmp_path: Path
) -> None:
    """The issue's sequence: a week loaded through the chain, then the same capture ingested again
    from a 6-row file that never gets normalized (here: ingested without --chain, as a chain whose
    normalize failed leaves it). RAW holds 6 rows; NORMALIZED and CALC hold the previous load's,
    under the same capture id."""
    first = write_sample_week(tmp_path / "first.csv", WEEK, Tier.OTC, symbols=10, seed=1)
    six = tmp_path / "six.csv"
    six.write_text(render_records(sample_records(WEEK, Tier.OTC, symbols=10, seed=1)[:6]), encoding="utf-8")
    before = len(sample_records(WEEK, Tier.OTC, symbols=10, seed=1))
    run = ("run", INGEST, *PARTITION, "--capture-date", "2025-12-16")
    assert spine(*run, "--file", str(first), "--chain").code == 0
    assert spine(*DOCTOR).code == 0

    assert spine(*run, "--file", str(six)).code == 0  # the same capture, replayed
    stages = _manifest(spine_env)
    assert {stage: (rows, capture) for stage, (rows, capture, *_) in stages.items()} == {
        "RAW": (6, "finra.otc_transparency:OTC:2025-11-10:20251216"),
        "NORMALIZED": (before, "finra.otc_transparency:OTC:2025-11-10:20251216"),
        "CALC": (before, "finra.otc_transparency:OTC:2025-11-10:20251216"),
    }
    assert stages["NORMALIZED"][3] != stages["RAW"][2]  # computed from the load that was replaced

    report = spine(*DOCTOR, "--format", "json")
    assert report.code == 1
    (gap,) = report.json()["gaps"]
    assert gap["kind"] == "incomplete_chain"
    assert (gap["week"], gap["tier"]) == ("2025-11-10", "OTC")
    assert gap["present_stages"] == ["RAW"]
    assert gap["missing_stages"] == gap["stale_stages"] == ["NORMALIZED", "CALC"]
    assert gap["remediation"] == f"spine run {NORMALIZE} --week 2025-11-10 --tier OTC --chain"
    table = spine(*DOCTOR)
    assert table.code == 1
    assert "has RAW; NORMALIZED,CALC computed from an older load" in table.out

    assert spine(*gap["remediation"].split()[1:]).code == 0
    assert spine(*DOCTOR).code == 0
    assert _count(spine_env, normalized) == _count(spine_env, venue_volume) == 6


def test_normalize_run_again_without_compute_leaves_calc_stale(spine: Spine, spine_env: str, tmp_path: Path) -> None:
    week = write_sample_week(tmp_path / "week.csv", WEEK, Tier.OTC, symbols=10, seed=1)
    assert spine("run", INGEST, *PARTITION, "--file", str(week), "--capture-date", "2025-12-16", "--chain").code == 0
    assert spine("run", NORMALIZE, *PARTITION).code == 0  # a new NORMALIZED execution; CALC not re-run

    report = spine(*DOCTOR, "--format", "json")
    assert report.code == 1
    (gap,) = report.json()["gaps"]
    assert (gap["present_stages"], gap["missing_stages"], gap["stale_stages"]) == (
        ["RAW", "NORMALIZED"],
        ["CALC"],
        ["CALC"],
    )
    assert gap["remediation"] == f"spine run {COMPUTE} --week 2025-11-10 --tier OTC --chain"
    assert spine(*gap["remediation"].split()[1:]).code == 0
    assert spine(*DOCTOR).code == 0
