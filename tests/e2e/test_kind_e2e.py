"""Market Spine on a real cluster (kind): image, chart, operator, pipeline Jobs, PostgreSQL, doctor.

Runs in order, on one cluster and one release:

1. build the image and load it into kind; deploy PostgreSQL and a file server holding a generated
   FINRA-format week; `helm install` the chart (the migration hook runs `spine db upgrade`);
2. apply a SpineWorkItem for that week with `chain: true`: ingest, normalize and compute must all
   reach COMPLETE, with the file's rows in the tables;
3. `spine doctor` is healthy for that partition, and the chart's doctor CronJob fails on the gaps
   of its 12-week window (exit code 1 = gaps);
4. a work item whose file answers 404 goes to RETRY_WAIT with one attempt, then FAILED;
5. `helm uninstall` removes the release and keeps the CRD.

Run with `make e2e` (needs Docker and kind; skips here otherwise). See docs/ops/install.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from market_spine.core.partitions import Tier
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.finra.sample import render_records, sample_records
from market_spine.finra.schedule import finra_calendar

from .conftest import CHART, NAMESPACE, RELEASE, ROOT, Kube, wait_for

pytestmark = pytest.mark.e2e

WEEK = date(2025, 11, 24)  # an NMS Tier 1 trading week (its Monday), published by FINRA on 2025-12-15
TIER = Tier.NMS_TIER_1
FAIL_TIER = Tier.NMS_TIER_2
PIPELINES = (
    "finra.otc_transparency.ingest_week",
    "finra.otc_transparency.normalize_week",
    "finra.otc_transparency.compute_week",
)
FULLNAME = f"{RELEASE}-market-spine"
FILES_URL = f"http://finra-files.{NAMESPACE}.svc.cluster.local"


def _crd_version() -> str:
    crd = yaml.safe_load((ROOT / "crds" / "spine.marketspine.io_spineworkitems.yaml").read_text())
    (storage,) = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    return f"spine.marketspine.io/{storage}"


def work_item(pipeline: str, tier: Tier, params: dict[str, str], **spec: Any) -> dict[str, Any]:
    """A SpineWorkItem manifest named as `spine work enqueue` would name it."""
    model = WorkItemSpec(
        pipeline=pipeline,
        partition=FinraPartition(week=WEEK, tier=tier),
        params=params,
        **spec,
    )
    body = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "apiVersion": _crd_version(),
        "kind": "SpineWorkItem",
        "metadata": {"name": model.name, "namespace": NAMESPACE},
        "spec": body,
    }


@pytest.fixture(scope="module")
def week_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A generated FINRA-format weekly file (pipe-delimited, FINRA's header) and its row count."""
    records = sample_records(WEEK, TIER, symbols=40, seed=7)
    path = tmp_path_factory.mktemp("finra") / finra_calendar().file_name(WEEK, TIER)
    path.write_text(render_records(records))
    return path, len(records)


@pytest.fixture(scope="module")
def file_server(kube: Kube, namespace: str, image: str, week_file: tuple[Path, int]) -> str:
    path, _ = week_file
    configmap = kube.run(
        "create", "configmap", "finra-files", f"--from-file={path.name}={path}", "--dry-run=client", "-o", "yaml"
    )
    kube.apply(configmap.stdout)
    kube.apply(Path(__file__).with_name("finra-files.yaml"))
    kube.run("rollout", "status", "deployment/finra-files", "--timeout=180s", timeout=210)
    return f"{FILES_URL}/{path.name}"


@pytest.fixture(scope="module")
def release(helm: Callable[..., Any], kube: Kube, image: str, postgres: str, file_server: str) -> Iterator[str]:
    repository, tag = image.split(":")
    helm(
        "upgrade", "--install", RELEASE, str(CHART), "--wait", "--timeout", "10m",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", f"database.url={postgres}",
        "--set", "operator.jobStartTimeoutSeconds=300",
    )  # fmt: skip
    yield RELEASE
    helm("uninstall", RELEASE, "--wait", check=False)


def _items(kube: Kube) -> list[dict[str, Any]]:
    return kube.json("get", "spineworkitems")["items"]


def _by_partition(kube: Kube, tier: Tier) -> dict[str, dict[str, Any]]:
    out = {}
    for item in _items(kube):
        part = item["spec"]["partition"]
        if part["week"] == WEEK.isoformat() and part["tier"] == tier.value:
            out[item["spec"]["pipeline"]] = item
    return out


def _describe(item: dict[str, Any]) -> str:
    status = item.get("status") or {}
    return f"{item['metadata']['name']}: {status.get('state')} attempts={status.get('attempts')} " + (
        f"lastError={status.get('lastError')!r}"
    )


def test_release_is_running(release: str, kube: Kube) -> None:
    deployment = kube.json("get", "deployment", FULLNAME)
    assert deployment["status"].get("readyReplicas") == 1
    crons = {c["metadata"]["name"] for c in kube.json("get", "cronjobs")["items"]}
    assert f"{FULLNAME}-enqueue-otc" in crons and f"{FULLNAME}-doctor" in crons
    # The migration hook ran `spine db upgrade`: the schema exists.
    assert kube.psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'core_work_items'") == "1"
    # The CRD is served: kubectl knows the short name.
    assert kube.run("get", "swi").returncode == 0


def test_chained_work_item_completes(release: str, kube: Kube, file_server: str) -> None:
    kube.apply(work_item(PIPELINES[0], TIER, {"file": file_server}, chain=True))

    def all_complete() -> bool:
        items = _by_partition(kube, TIER)
        states = {p: (items[p].get("status") or {}).get("state") for p in items}
        failed = [p for p, s in states.items() if s == "FAILED"]
        assert not failed, "; ".join(_describe(items[p]) for p in failed)
        return set(states) == set(PIPELINES) and set(states.values()) == {"COMPLETE"}

    wait_for("ingest -> normalize -> compute to COMPLETE", all_complete, timeout=900)
    items = _by_partition(kube, TIER)
    for pipeline in PIPELINES:
        status = items[pipeline]["status"]
        assert status["attempts"] == 1, _describe(items[pipeline])
        assert status.get("completedAt")
    # One Job per attempt, named after the work item.
    jobs = {j["metadata"]["name"] for j in kube.json("get", "jobs")["items"]}
    for item in items.values():
        assert any(name.startswith(item["metadata"]["name"]) for name in jobs), jobs


def test_data_in_the_tables(release: str, kube: Kube, week_file: tuple[Path, int]) -> None:
    _, rows = week_file
    where = f"week = '{WEEK.isoformat()}' AND tier = '{TIER.value}'"
    raw = int(kube.psql(f"SELECT count(*) FROM finra_otc_transparency_raw WHERE {where}"))
    assert raw == rows
    normalized = int(kube.psql(f"SELECT count(*) FROM finra_otc_transparency_normalized WHERE {where}"))
    rejects = int(kube.psql(f"SELECT count(*) FROM finra_otc_transparency_rejects WHERE {where}"))
    assert normalized + rejects == raw
    assert int(kube.psql(f"SELECT count(*) FROM finra_otc_transparency_symbol_hhi WHERE {where}")) > 0
    stages = kube.psql(
        f"SELECT string_agg(stage, ',' ORDER BY stage) FROM core_manifest "
        f"WHERE domain = 'finra.otc_transparency' AND {where}"
    )
    assert stages.split(",") == ["CALC", "NORMALIZED", "RAW"]
    # The operator mirrored the work items into PostgreSQL.
    states = kube.psql(
        "SELECT string_agg(DISTINCT state, ',') FROM core_work_items "
        f"WHERE partition_key LIKE '%{TIER.value}%' AND partition_key LIKE '%{WEEK.isoformat()}%'"
    )
    assert states == "COMPLETE"


def test_doctor_is_healthy_for_the_ingested_partition(release: str, kube: Kube) -> None:
    out = kube.run(
        "exec", f"deploy/{FULLNAME}", "--",
        "spine", "doctor", "finra.otc_transparency", "--weeks", "1", "--as-of", WEEK.isoformat(),
        "--tier", TIER.value, "--stale-days", "0", "--format", "json",
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["healthy"] is True
    assert report["expected_partitions"] == 1
    assert report["missing_partitions"] == 0 and report["incomplete_partitions"] == 0


def test_doctor_cronjob_fails_on_gaps(release: str, kube: Kube) -> None:
    """The chart's daily check covers 12 weeks x 3 tiers: with one partition present it must fail."""
    kube.run("delete", "job", "doctor-e2e", "--ignore-not-found")
    kube.run("create", "job", f"--from=cronjob/{FULLNAME}-doctor", "doctor-e2e")

    def finished() -> str | None:
        status = kube.json("get", "job", "doctor-e2e").get("status", {})
        if status.get("succeeded"):
            return "succeeded"
        if status.get("failed"):
            return "failed"
        return None

    assert wait_for("the doctor Job to finish", finished, timeout=300) == "failed"
    log = kube.run("logs", "job/doctor-e2e").stdout
    assert "spine " in log, "the report lists remediation commands"


def test_failed_attempt_retries_then_fails(release: str, kube: Kube) -> None:
    missing = f"{FILES_URL}/{finra_calendar().file_name(WEEK, FAIL_TIER)}"  # not served: 404
    manifest = work_item(
        PIPELINES[0], FAIL_TIER, {"file": missing}, maxAttempts=2, retry={"backoffSeconds": 30, "factor": 1}
    )
    kube.apply(manifest)
    name = manifest["metadata"]["name"]

    def status() -> dict[str, Any]:
        return kube.json("get", "spineworkitem", name).get("status") or {}

    first = wait_for("RETRY_WAIT after the first failed attempt", lambda: (
        s if (s := status()).get("state") == "RETRY_WAIT" else None
    ), timeout=600, interval=2)  # fmt: skip
    assert first["attempts"] == 1
    assert first.get("nextAttemptAt")
    error = first.get("lastError") or ""
    assert "404" in error or "not found" in error.lower(), first
    final = wait_for("FAILED after the second attempt", lambda: (
        s if (s := status()).get("state") == "FAILED" else None
    ), timeout=600)  # fmt: skip
    assert final["attempts"] == 2
    events = kube.run("get", "events", "--field-selector", f"involvedObject.name={name}").stdout
    assert "Warning" in events
    attempts = kube.psql(f"SELECT attempt_count || ':' || state FROM core_work_items WHERE k8s_name = '{name}'")
    assert attempts == "2:FAILED"


def test_uninstall_keeps_the_crd(release: str, helm: Callable[..., Any], kube: Kube) -> None:
    helm("uninstall", RELEASE, "--wait")
    assert kube.run("get", "deployment", FULLNAME, check=False).returncode != 0
    assert kube.json("get", "cronjobs")["items"] == []
    crd = kube.run("get", "crd", "spineworkitems.spine.marketspine.io", namespaced=False, check=False)
    assert crd.returncode == 0, "crds.keep must keep the CRD (and the work items) after uninstall"
    assert len(_by_partition(kube, TIER)) == 3, "work items survive an uninstall"
