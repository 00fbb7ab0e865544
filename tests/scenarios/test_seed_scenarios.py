"""The seed's seven scheduler scenarios, driven through the real ``spine`` CLI on a real PostgreSQL.

Nothing here writes SQL: work is enqueued, run, inspected and repaired with the commands an
operator would type, and the clock the CLI sees is pinned so backoff can be checked to the second.
Partitions are FINRA trading weeks: the OTC week of 2025-11-10, which FINRA published on Monday
2025-12-15 (the real file finra_otc_weekly_otc_20251215.csv, served by the FINRA test double), is
ingested on Tuesday 2025-12-16.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier, weekly_file_name
from market_spine.finra.sample import write_sample_week
from tests.support.cli import Spine
from tests.support.finra_api import FinraApi

INGEST = "finra.otc_transparency.ingest_week"
NORMALIZE = "finra.otc_transparency.normalize_week"
WEEK = date(2025, 11, 10)  # OTC trading week, first published by FINRA on 2025-12-15
T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)
T1, T2, OTC = Tier.NMS_TIER_1, Tier.NMS_TIER_2, Tier.OTC
# What FINRA published on each Monday: one trading week per tier (Tier 1 three weeks after its
# Monday, Tier 2 and OTC five weeks after).
PUBLISHED: dict[date, dict[Tier, date]] = {
    date(2025, 12, 8): {T1: date(2025, 11, 17), T2: date(2025, 11, 3), OTC: date(2025, 11, 3)},
    date(2025, 12, 15): {T1: date(2025, 11, 24), T2: date(2025, 11, 10), OTC: date(2025, 11, 10)},
    date(2025, 12, 22): {T1: date(2025, 12, 1), T2: date(2025, 11, 17), OTC: date(2025, 11, 17)},
}


def _items(spine: Spine, *extra: str) -> list[dict[str, object]]:
    result = spine("work", "list", "--format", "json", *extra)
    assert result.code == 0, result.err
    items: list[dict[str, object]] = result.json()
    return items


def _item(spine: Spine, pipeline: str = INGEST) -> dict[str, object]:
    items = [i for i in _items(spine) if i["pipeline"] == pipeline]
    assert len(items) == 1, items
    return items[0]


def _ts(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


def test_1_503_goes_to_retry_wait_for_five_minutes_then_completes(spine: Spine, finra_api: FinraApi) -> None:
    spine.now = T0
    assert spine("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api").code == 0

    finra_api.fail(503, times=3)  # every try of the first attempt's API client
    first = spine("worker", "--until-idle")
    assert first.code == 0, first.err
    item = _item(spine)
    assert item["state"] == "RETRY_WAIT"
    assert item["attempts"] == "1/3"
    assert "503" in str(item["last_error"])
    assert _ts(item["next_attempt_at"]) == T0 + timedelta(minutes=5)

    spine.now = T0 + timedelta(minutes=4)  # not due yet: the worker leaves it waiting
    assert spine("worker", "--until-idle").code == 0
    assert _item(spine)["state"] == "RETRY_WAIT"

    spine.now = T0 + timedelta(minutes=5, seconds=1)
    assert spine("worker", "--until-idle").code == 0
    item = _item(spine)
    assert item["state"] == "COMPLETE"
    assert item["attempts"] == "2/3"

    captures = spine("query", "captures", "--week", "2025-11-10", "--tier", "OTC", "--format", "json").json()
    assert [c["capture_id"] for c in captures] == ["finra.otc_transparency:OTC:2025-11-10:20251216"]
    # Only the week's ATS venue rows: FINRA's answer also held other row kinds and a correction.
    assert captures[0]["raw_rows"] == len(finra_api.venue_rows(WEEK, OTC))
    assert (captures[0]["published_from"], captures[0]["published_to"]) == ("2025-12-15", "2025-12-19")


def test_2_three_failures_with_60s_backoff_end_in_failed(spine: Spine, finra_api: FinraApi) -> None:
    spine.now = T0
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api")
    assert spine(*enqueue, "--backoff-seconds", "60").code == 0
    finra_api.fail(503, times=9)

    waits = []
    for _attempt in range(3):
        assert spine("worker", "--until-idle").code == 0
        item = _item(spine)
        if item["state"] == "RETRY_WAIT":
            due = _ts(item["next_attempt_at"])
            waits.append((due - spine.now).total_seconds())
            spine.now = due
    assert waits == [60.0, 120.0]
    item = _item(spine)
    assert item["state"] == "FAILED"
    assert item["attempts"] == "3/3"
    assert item["next_attempt_at"] is None

    spine.now = T0 + timedelta(days=1)  # FAILED waits for a human, not for time
    assert spine("worker", "--until-idle").code == 0
    assert _item(spine)["state"] == "FAILED"


def _land(tmp_path: Path, days: list[date], tiers: list[Tier]) -> Path:
    """The files FINRA published on ``days``, saved under FINRA's names (the publication day)."""
    for day in days:
        for tier in tiers:
            path = write_sample_week(tmp_path, PUBLISHED[day][tier], tier, symbols=15, seed=3)
            assert path.name == weekly_file_name(day, tier)
    return tmp_path


def _run_remediations(spine: Spine, report: dict[str, object]) -> None:
    gaps = report["gaps"]
    assert isinstance(gaps, list)
    for gap in gaps:
        command = gap["remediation"].split()
        assert command[0] == "spine"
        result = spine(*command[1:])
        assert result.code == 0, (gap, result.err)


def test_3_one_missing_week_in_three_weeks_by_three_tiers_is_three_missing_partitions(
    spine: Spine, tmp_path: Path
) -> None:
    days = sorted(PUBLISHED)
    landing = _land(tmp_path, days, list(Tier))
    for day in (days[0], days[2]):  # FINRA's publication of 2025-12-15 is never ingested
        for tier in Tier:
            file = str(landing / weekly_file_name(day, tier))
            week = str(PUBLISHED[day][tier])
            result = spine("run", INGEST, "--week", week, "--tier", tier.value, "--file", file, "--chain")
            assert result.code == 0, result.err

    doctor = (
        "doctor",
        "finra.otc_transparency",
        "--weeks",
        "3",
        "--as-of",
        "2025-12-23",
        "--landing-dir",
        str(landing),
    )
    result = spine(*doctor, "--format", "json")
    assert result.code == 1
    report = result.json()
    assert report["expected_partitions"] == 9
    assert report["missing_partitions"] == 3
    # One publication day missing is one trading week per tier: a different week for Tier 1.
    assert {(g["week"], g["tier"], g["published_on"]) for g in report["gaps"]} == {
        ("2025-11-24", "NMS_TIER_1", "2025-12-15"),
        ("2025-11-10", "NMS_TIER_2", "2025-12-15"),
        ("2025-11-10", "OTC", "2025-12-15"),
    }
    assert all(g["kind"] == "missing_partition" for g in report["gaps"])
    assert {g["remediation"].split("--file ")[1].split()[0] for g in report["gaps"]} == {
        str(landing / weekly_file_name(date(2025, 12, 15), tier)) for tier in Tier
    }

    _run_remediations(spine, report)  # each printed command fills its gap
    healed = spine(*doctor, "--format", "json")
    assert healed.code == 0, healed.out
    assert healed.json()["healthy"] is True


def test_4_raw_without_normalized_is_an_incomplete_chain_with_a_remediation(spine: Spine, tmp_path: Path) -> None:
    landing = _land(tmp_path, [date(2025, 12, 15)], [T1])
    file = str(landing / weekly_file_name(date(2025, 12, 15), T1))
    assert spine("run", INGEST, "--week", "2025-11-24", "--tier", "NMS_TIER_1", "--file", file).code == 0

    doctor = ("doctor", "finra.otc_transparency", "--weeks", "1", "--as-of", "2025-12-16", "--tier", "NMS_TIER_1")
    result = spine(*doctor, "--format", "json")
    assert result.code == 1
    report = result.json()
    assert report["missing_partitions"] == 0
    assert report["incomplete_partitions"] == 1
    (gap,) = report["gaps"]
    assert gap["present_stages"] == ["RAW"]
    assert gap["missing_stages"] == ["NORMALIZED", "CALC"]
    assert gap["remediation"].startswith(f"spine run {NORMALIZE} --week 2025-11-24 --tier NMS_TIER_1")

    table = spine(*doctor)
    assert table.code == 1
    assert gap["remediation"] in table.out  # the human report prints the same command

    _run_remediations(spine, report)
    assert spine(*doctor).code == 0


def test_5_duplicate_enqueue_is_a_reported_no_op_with_one_row(spine: Spine) -> None:
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api")
    first = spine(*enqueue)
    assert first.code == 0
    assert first.out.startswith("enqueued ingest-week-2025-11-10-otc-")
    again = spine(*enqueue, "--priority", "7")
    assert again.code == 0
    assert "already enqueued" in again.out
    # The same trading week named by the seed's --week-ending (its Friday) and FINRA's tier code,
    # options in another order: still the same item.
    alias = spine("work", "enqueue", INGEST, "--tier", "OTCE", "--week-ending", "2025-11-14", "--source", "finra-api")
    assert "already enqueued" in alias.out
    items = _items(spine)
    assert len(items) == 1
    assert items[0]["priority"] == 100  # the no-op changed nothing


def test_6_restatement_captures_coexist_latest_shows_newer_as_of_returns_older(spine: Spine, tmp_path: Path) -> None:
    monday = tmp_path / "monday.csv"
    tuesday = tmp_path / "tuesday.csv"
    write_sample_week(monday, WEEK, Tier.OTC, symbols=30, seed=5)
    lines = monday.read_text().splitlines()
    dropped_symbol = lines[1].split("|")[1]
    # Tuesday's correction drops the first symbol entirely.
    tuesday.write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ln.split("|")[1] != dropped_symbol)]) + "\n")

    run = ("run", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--chain")
    assert spine(*run, "--file", str(monday), "--capture-date", "2025-12-15").code == 0
    assert spine(*run, "--file", str(tuesday), "--capture-date", "2025-12-16").code == 0

    query = ("query", "captures", "--week", "2025-11-10", "--tier", "OTC", "--format", "json")
    captures = {c["capture_id"]: c for c in spine(*query).json()}
    older, newer = "finra.otc_transparency:OTC:2025-11-10:20251215", "finra.otc_transparency:OTC:2025-11-10:20251216"
    assert set(captures) == {older, newer}
    assert captures[older]["raw_rows"] == len(lines) - 1
    assert captures[newer]["raw_rows"] < captures[older]["raw_rows"]

    hhi = ("query", "hhi", "--week", "2025-11-10", "--tier", "OTC", "--format", "json")
    latest = spine(*hhi).json()
    assert {r["capture_id"] for r in latest} == {newer}
    assert dropped_symbol not in {r["symbol"] for r in latest}
    as_of = spine(*hhi, "--capture-id", older).json()
    assert {r["capture_id"] for r in as_of} == {older}
    assert dropped_symbol in {r["symbol"] for r in as_of}

    # Replaying Tuesday's capture replaces it: still two captures, same row count.
    assert spine(*run, "--file", str(tuesday), "--capture-date", "2025-12-16").code == 0
    replayed = {c["capture_id"]: c for c in spine(*query).json()}
    assert set(replayed) == {older, newer}
    assert replayed[newer]["raw_rows"] == captures[newer]["raw_rows"]


def test_7_admin_retry_moves_failed_to_pending_with_fresh_attempts(spine: Spine, finra_api: FinraApi) -> None:
    spine.now = T0
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api")
    assert spine(*enqueue, "--max-attempts", "1").code == 0
    finra_api.fail(500, times=3)
    assert spine("worker", "--until-idle").code == 0
    assert _item(spine)["state"] == "FAILED"

    doctor = spine(
        "doctor", "finra.otc_transparency", "--weeks", "1", "--as-of", "2025-12-16", "--tier", "OTC", "--format", "json"
    )
    failed = [g for g in doctor.json()["gaps"] if g["kind"] == "failed_work"]
    assert [g["remediation"] for g in failed] == [f"spine work retry {INGEST} --week 2025-11-10 --tier OTC"]

    retried = spine(*failed[0]["remediation"].split()[1:])
    assert retried.code == 0, retried.err
    item = _item(spine)
    assert item["state"] == "PENDING"
    assert item["attempts"] == "0/1"

    assert spine("worker", "--until-idle").code == 0
    assert _item(spine)["state"] == "COMPLETE"

    retry_again = spine("work", "retry", INGEST, "--week", "2025-11-10", "--tier", "OTC")
    assert retry_again.code == 0  # COMPLETE → PENDING for a deliberate re-run
    cancel = spine("work", "cancel", INGEST, "--week-ending", "2025-11-14", "--tier", "OTC")
    assert cancel.code == 0
    assert _item(spine)["state"] == "CANCELLED"
    reopened = spine("work", "retry", INGEST, "--week", "2025-11-12", "--tier", "OTC")
    assert reopened.code == 0, reopened.err  # a CANCELLED item is re-opened by a retry
    assert _item(spine)["state"] == "PENDING"
    refused = spine("work", "retry", INGEST, "--week", "2025-11-12", "--tier", "OTC")
    assert refused.code == 2
    assert refused.err.strip().endswith(
        f"spine: error: can't retry {INGEST} --week 2025-11-10 --tier OTC: it is waiting to run already, "
        "with its attempts unused"
    )
    assert "Traceback" not in refused.err


@pytest.mark.parametrize(("tier", "week"), [("NMS_TIER_1", date(2025, 11, 24)), ("NMS_TIER_2", WEEK)])
def test_generated_tiers_run_end_to_end_through_the_queue(spine: Spine, tmp_path: Path, tier: str, week: date) -> None:
    path = write_sample_week(tmp_path / "w.csv", week, Tier(tier), symbols=25, seed=11)
    assert (
        spine("work", "enqueue", INGEST, "--week", str(week), "--tier", tier, "--file", str(path), "--chain").code == 0
    )
    result = spine("worker", "--until-idle", "--concurrency", "2")
    assert result.code == 0
    states = {i["pipeline"]: i["state"] for i in _items(spine)}
    assert states == {INGEST: "COMPLETE", NORMALIZE: "COMPLETE", "finra.otc_transparency.compute_week": "COMPLETE"}


def test_a_file_no_attempt_can_fix_fails_at_once_with_its_reason(spine: Spine, tmp_path: Path) -> None:
    path = write_sample_week(tmp_path / "w.csv", date(2025, 11, 3), Tier.OTC, symbols=5, seed=1)  # the week before
    assert spine("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", str(path)).code == 0
    assert spine("worker", "--until-idle").code == 0
    item = _item(spine)
    assert item["state"] == "FAILED"
    assert item["attempts"] == "1/3"  # no retries spent on a file that will not change
    assert str(item["last_error"]).startswith("InputFileError: ")
    assert "published on 2025-12-08" in str(item["last_error"])
    assert "use --week 2025-11-03" in str(item["last_error"])


def test_backfill_enqueues_weeks_by_tiers_at_low_priority_and_is_idempotent(spine: Spine, tmp_path: Path) -> None:
    args = ("work", "backfill", INGEST, "--landing-dir", str(tmp_path))
    first = spine(*args, "--from", "2025-11-03", "--to", "2025-11-17")
    assert first.code == 0, first.err
    assert first.out.strip() == "backfill: 9 enqueued, 0 already enqueued (9 partitions)"
    assert "backfill: trading weeks 2025-11-03 (Mon 2025-11-03 – Fri 2025-11-07) to 2025-11-17" in first.err
    # By trading weeks: any dates inside the same three weeks name the same partitions.
    again = spine(*args, "--from", "2025-11-05", "--to", "2025-11-21")
    assert again.out.strip() == "backfill: 0 enqueued, 9 already enqueued (9 partitions)"
    items = _items(spine)
    assert len(items) == 9
    assert {i["priority"] for i in items} == {25}
    assert {(i["week"], i["tier"]) for i in items} == {
        (w, t.value) for w in ("2025-11-03", "2025-11-10", "2025-11-17") for t in Tier
    }
    refused = spine("work", "backfill", INGEST, "--from", "2025-11-03", "--to", "2025-11-17")
    assert refused.code == 2
    assert "needs params.file" in refused.err
