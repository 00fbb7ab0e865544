"""The seed's seven scheduler scenarios, through the operator: ``spine work …`` with
``SPINE_BACKEND=kubernetes`` creates SpineWorkItems, the real operator turns them into Jobs, and the
test plays the kubelet by running each Job's own command (``spine run … --execution-id …``)
against the test database, then reports its exit code and log tail as the Job and pod status.
Results are checked with ``spine work list``, ``spine query`` and ``spine doctor``. Partitions are
FINRA trading weeks: the OTC week of 2025-11-10, published by FINRA on 2025-12-15 (the real file,
served by the FINRA test double), ingested on 2025-12-16.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from market_spine.cli import context
from market_spine.core.partitions import Tier, capture_id, weekly_file_name
from market_spine.finra.sample import write_sample_week
from tests.operator.checks import consistent, mirrored
from tests.operator.conftest import StartOperator
from tests.operator.harness import FakeClock, JobController, Namespace, OperatorProcess, wait_for
from tests.support.cli import Spine
from tests.support.finra_api import FinraApi

INGEST = "finra.otc_transparency.ingest_week"
NORMALIZE = "finra.otc_transparency.normalize_week"
COMPUTE = "finra.otc_transparency.compute_week"
WEEK = date(2025, 11, 10)  # OTC trading week, first published by FINRA on 2025-12-15
T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)


@pytest.fixture
def kspine(spine: Spine, ns: Namespace, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Spine:
    """``spine …`` on the kubernetes backend, in this test's namespace, on the operator's clock."""
    monkeypatch.setenv("SPINE_BACKEND", "kubernetes")
    monkeypatch.setenv("SPINE_NAMESPACE", ns.name)
    monkeypatch.setenv("SPINE_KUBECONFIG", str(ns.cluster.kubeconfig))
    monkeypatch.setattr(context, "utcnow", clock)
    return spine


@pytest.fixture
def op(start_operator: StartOperator, finra_api: FinraApi) -> OperatorProcess:
    return start_operator(finra_api_url=finra_api.url, finra_api_rate_per_second=1000.0)


def items(spine: Spine) -> list[dict[str, Any]]:
    result = spine("work", "list", "--format", "json")
    assert result.code == 0, result.err
    listed: list[dict[str, Any]] = result.json()
    return listed


def item(spine: Spine, pipeline: str = INGEST) -> dict[str, Any]:
    (found,) = [i for i in items(spine) if i["pipeline"] == pipeline]
    return found


def run_jobs(ns: Namespace, jobs: JobController, until: Callable[[], bool], timeout: float = 60.0) -> list[int]:
    """Play the kubelet: run every Job the operator starts, until ``until()`` holds."""
    done: set[str] = set()
    codes: list[int] = []

    def step() -> bool:
        for obj in ns.items():
            status = obj.get("status") or {}
            job = status.get("currentJob")
            if status.get("state") == "RUNNING" and job and job not in done:
                done.add(job)
                codes.append(jobs.run(job))
        return until()

    try:
        wait_for(step, timeout, "the operator's work to finish", interval=0.05)
    except AssertionError:
        for obj in ns.items():
            print(obj["metadata"]["name"], obj.get("status"))
        for job in ns.jobs():
            print(job["metadata"]["name"], job.get("status"))
        raise
    return codes


def states(ns: Namespace) -> dict[str, str]:
    # By name: keyed by pipeline, the items of one pipeline would hide each other's states.
    return {o["metadata"]["name"]: (o.get("status") or {}).get("state") for o in ns.items()}


def test_1_503_then_a_five_minute_backoff_then_complete(
    kspine: Spine,
    ns: Namespace,
    op: OperatorProcess,
    jobs: JobController,
    clock: FakeClock,
    finra_api: FinraApi,
    engine: Engine,
) -> None:
    enqueue = kspine("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api")
    assert enqueue.code == 0, enqueue.err
    assert enqueue.out.startswith("enqueued ")

    finra_api.fail(503, times=3)  # every try of the first attempt's API client
    assert run_jobs(ns, jobs, lambda: item(kspine)["state"] == "RETRY_WAIT") == [5]  # SourceUnavailable
    listed = item(kspine)
    assert listed["attempts"] == "1/3"
    assert "503" in listed["last_error"]
    assert datetime.fromisoformat(listed["next_attempt_at"]) == T0 + timedelta(minutes=5)

    clock.advance(4 * 60)
    assert item(kspine)["state"] == "RETRY_WAIT"
    clock.advance(60)
    assert run_jobs(ns, jobs, lambda: item(kspine)["state"] == "COMPLETE") == [0]
    assert item(kspine)["attempts"] == "2/3"

    captures = kspine("query", "captures", "--week", "2025-11-10", "--tier", "OTC", "--format", "json").json()
    expected = capture_id(Tier.OTC, WEEK, jobs.today())  # the day the pipeline's pod ran
    assert [c["capture_id"] for c in captures] == [expected]
    assert captures[0]["raw_rows"] == len(finra_api.venue_rows(WEEK, Tier.OTC))  # ATS venue rows only
    name = listed["name"]
    assert ns.status(name).capture_id == expected
    consistent(ns, name, engine)


def test_2_three_failures_wait_60_then_120_seconds_and_end_in_failed(
    kspine: Spine,
    ns: Namespace,
    op: OperatorProcess,
    jobs: JobController,
    clock: FakeClock,
    finra_api: FinraApi,
    engine: Engine,
) -> None:
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api")
    assert kspine(*enqueue, "--backoff-seconds", "60").code == 0
    finra_api.fail(503, times=9)
    waits = []
    for attempt in range(1, 4):
        run_jobs(ns, jobs, lambda a=attempt: _ended(item(kspine), a))
        listed = item(kspine)
        if listed["state"] == "RETRY_WAIT":
            due = datetime.fromisoformat(listed["next_attempt_at"])
            waits.append((due - clock()).total_seconds())
            clock.set(due)
    assert waits == [60.0, 120.0]
    listed = item(kspine)
    assert (listed["state"], listed["attempts"], listed["next_attempt_at"]) == ("FAILED", "3/3", None)
    clock.advance(24 * 3600)  # FAILED waits for a human, not for time
    assert item(kspine)["state"] == "FAILED"
    assert len(ns.jobs(listed["name"])) == 3
    consistent(ns, listed["name"], engine)


def _ended(listed: dict[str, Any], attempt: int) -> bool:
    return listed["state"] in ("RETRY_WAIT", "FAILED") and listed["attempts"] == f"{attempt}/3"


def _land(folder: Path, weeks: list[date], tier: Tier) -> Path:
    """Each week's file, saved under FINRA's name for it (the day FINRA published it)."""
    for week in weeks:
        write_sample_week(folder, week, tier, symbols=12, seed=3)
    return folder


# OTC trading weeks and the days FINRA published them.
OTC_WEEKS = {
    date(2025, 11, 3): date(2025, 12, 8),
    date(2025, 11, 10): date(2025, 12, 15),
    date(2025, 11, 17): date(2025, 12, 22),
}


def test_3_and_4_gaps_and_stage_chains_after_operator_run_work(
    kspine: Spine, ns: Namespace, op: OperatorProcess, jobs: JobController, tmp_path: Path, engine: Engine
) -> None:
    weeks = sorted(OTC_WEEKS)
    landing = _land(tmp_path, weeks, Tier.OTC)
    for week in (weeks[0], weeks[2]):  # 2025-11-10 is never enqueued
        file = str(landing / weekly_file_name(OTC_WEEKS[week], Tier.OTC))
        result = kspine("work", "enqueue", INGEST, "--week", str(week), "--tier", "OTC", "--file", file, "--chain")
        assert result.code == 0, result.err
    run_jobs(ns, jobs, lambda: len(ns.items()) == 6 and set(states(ns).values()) == {"COMPLETE"})

    doctor = (
        "doctor",
        "finra.otc_transparency",
        "--weeks",
        "3",
        "--as-of",
        "2025-12-23",
        "--tier",
        "OTC",
        "--landing-dir",
        str(landing),
        "--format",
        "json",
    )
    report = kspine(*doctor)
    assert report.code == 1, report.err
    gaps = report.json()["gaps"]
    assert [(g["kind"], g["week"], g["published_on"]) for g in gaps] == [
        ("missing_partition", "2025-11-10", "2025-12-15")
    ]

    # Fill it as work for the operator: ingest only (no chain) leaves an incomplete stage chain.
    file = str(landing / weekly_file_name(OTC_WEEKS[weeks[1]], Tier.OTC))
    assert kspine("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", file).code == 0
    run_jobs(ns, jobs, lambda: len(ns.items()) == 7 and set(states(ns).values()) == {"COMPLETE"})
    report = kspine(*doctor)
    assert report.code == 1
    (gap,) = report.json()["gaps"]
    assert (gap["kind"], gap["present_stages"], gap["missing_stages"]) == (
        "incomplete_chain",
        ["RAW"],
        ["NORMALIZED", "CALC"],
    )
    assert gap["remediation"].startswith(f"spine run {NORMALIZE} --week 2025-11-10 --tier OTC")

    # The same repair as work items: normalize with --chain, then compute follows.
    assert kspine("work", "enqueue", NORMALIZE, "--week-ending", "2025-11-14", "--tier", "OTC", "--chain").code == 0
    run_jobs(ns, jobs, lambda: len(ns.items()) == 9 and set(states(ns).values()) == {"COMPLETE"})
    healed = kspine(*doctor)
    assert healed.code == 0, healed.out
    for obj in ns.items():
        consistent(ns, obj["metadata"]["name"], engine)


def test_5_a_duplicate_enqueue_is_one_object_and_one_row(
    kspine: Spine, ns: Namespace, op: OperatorProcess, engine: Engine
) -> None:
    enqueue = (
        "work",
        "enqueue",
        INGEST,
        "--week",
        "2025-11-10",
        "--tier",
        "OTC",
        "--source",
        "finra-api",
        "--desired-at",
        "2030-01-01T00:00:00+00:00",
    )
    first = kspine(*enqueue)
    assert first.code == 0 and first.out.startswith("enqueued ")
    again = kspine(*enqueue, "--priority", "7")
    assert again.code == 0 and "already enqueued" in again.out
    alias = kspine("work", "enqueue", INGEST, "--tier", "OTCE", "--week-ending", "2025-11-14", "--source", "finra-api")
    assert "already enqueued" in alias.out
    assert len(ns.items()) == 1
    listed = items(kspine)
    assert len(listed) == 1 and listed[0]["priority"] == 100
    row = mirrored(ns, listed[0]["name"], engine)
    with engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM core_work_items")).scalar() == 1
    assert row["state"] == "PENDING"


def test_6_a_restatement_reruns_the_chain_and_both_captures_coexist(
    kspine: Spine,
    ns: Namespace,
    op: OperatorProcess,
    jobs: JobController,
    clock: FakeClock,
    tmp_path: Path,
    engine: Engine,
) -> None:
    monday, tuesday = tmp_path / "monday.csv", tmp_path / "tuesday.csv"
    write_sample_week(monday, WEEK, Tier.OTC, symbols=30, seed=5)
    lines = monday.read_text().splitlines()
    dropped = lines[1].split("|")[1]
    tuesday.write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ln.split("|")[1] != dropped)]) + "\n")

    # The capture days are explicit: on a real cluster the pipeline's pod runs on the real clock.
    clock.set(datetime(2025, 12, 15, 18, 0, tzinfo=UTC))
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", str(monday))
    result = kspine(*enqueue, "--capture-date", "2025-12-15", "--chain")
    assert result.code == 0, result.err
    run_jobs(ns, jobs, lambda: len(ns.items()) == 3 and set(states(ns).values()) == {"COMPLETE"})

    # Tuesday: FINRA restates the week. Point the ingest at the new file and re-run it.
    clock.set(datetime(2025, 12, 16, 9, 0, tzinfo=UTC))
    ingest = item(kspine)["name"]
    ns.patch_spec(ingest, {"params": {"file": str(tuesday), "capture_date": "2025-12-16"}})
    retried = kspine("work", "retry", INGEST, "--week", "2025-11-10", "--tier", "OTC")
    assert retried.code == 0, retried.err
    assert "PENDING" in retried.out
    run_jobs(
        ns,
        jobs,
        lambda: (
            all(ns.status(o["metadata"]["name"]).total_attempts == 2 for o in ns.items())
            and set(states(ns).values()) == {"COMPLETE"}
        ),
    )

    query = ("query", "captures", "--week", "2025-11-10", "--tier", "OTC", "--format", "json")
    captures = {c["capture_id"]: c for c in kspine(*query).json()}
    older, newer = "finra.otc_transparency:OTC:2025-11-10:20251215", "finra.otc_transparency:OTC:2025-11-10:20251216"
    assert set(captures) == {older, newer}
    assert captures[newer]["raw_rows"] < captures[older]["raw_rows"]
    hhi = ("query", "hhi", "--week", "2025-11-10", "--tier", "OTC", "--format", "json")
    latest = kspine(*hhi).json()
    assert {r["capture_id"] for r in latest} == {newer}
    assert dropped not in {r["symbol"] for r in latest}
    as_of = kspine(*hhi, "--capture-id", older).json()
    assert dropped in {r["symbol"] for r in as_of}
    normalize = next(o for o in ns.items() if o["spec"]["pipeline"] == NORMALIZE)
    assert normalize["spec"]["params"] == {"capture_id": newer}  # the chain pins what it reads
    for obj in ns.items():
        consistent(ns, obj["metadata"]["name"], engine)


def test_7_admin_retry_from_failed_then_rerun_cancel_and_refusal(
    kspine: Spine, ns: Namespace, op: OperatorProcess, jobs: JobController, finra_api: FinraApi, engine: Engine
) -> None:
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--source", "finra-api")
    assert kspine(*enqueue, "--max-attempts", "1").code == 0
    finra_api.fail(500, times=3)
    run_jobs(ns, jobs, lambda: item(kspine)["state"] == "FAILED")
    name = item(kspine)["name"]
    mirrored(ns, name, engine)

    doctor = kspine(
        "doctor", "finra.otc_transparency", "--weeks", "1", "--as-of", "2025-12-16", "--tier", "OTC", "--format", "json"
    )
    failed = [g for g in doctor.json()["gaps"] if g["kind"] == "failed_work"]
    assert [g["remediation"] for g in failed] == [f"spine work retry {INGEST} --week 2025-11-10 --tier OTC"]
    retried = kspine(*failed[0]["remediation"].split()[1:])
    assert retried.code == 0, retried.err
    assert "PENDING, attempts reset" in retried.out

    run_jobs(ns, jobs, lambda: item(kspine)["state"] == "COMPLETE")
    assert item(kspine)["attempts"] == "1/1"
    assert [r.outcome.value for r in ns.status(name).history] == ["FAILED", "SUCCEEDED"]

    again = kspine("work", "retry", INGEST, "--week", "2025-11-10", "--tier", "OTC")
    assert again.code == 0  # COMPLETE → PENDING for a deliberate re-run
    cancel = kspine("work", "cancel", INGEST, "--week-ending", "2025-11-14", "--tier", "OTC")
    assert cancel.code == 0, cancel.err
    ns.wait_state(name, "CANCELLED")
    reopened = kspine("work", "retry", INGEST, "--week", "2025-11-10", "--tier", "OTC")
    assert reopened.code == 0, reopened.err  # a retry re-opens a CANCELLED item, as on the local backend
    run_jobs(ns, jobs, lambda: item(kspine)["state"] == "COMPLETE")
    refused = kspine("work", "wake", INGEST, "--week", "2025-11-10", "--tier", "OTC")
    assert refused.code == 2
    assert refused.err.strip() == (
        f"spine: error: can't wake {INGEST} --week 2025-11-10 --tier OTC: it completed; "
        f"`spine work retry {INGEST} --week 2025-11-10 --tier OTC` runs it again"
    )
    consistent(ns, name, engine)
