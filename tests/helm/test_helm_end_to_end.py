"""The Helm chart, end to end, on the real control plane: from `helm install` to COMPLETE work.

One release, installed by the real ``helm`` binary (hooks included) into a control plane of its own
(an empty cluster: Helm installs the CRD too), with the real Job, CronJob, Deployment and
garbage-collector controllers. Every pod runs as a local process under the process kubelet
(``tests/support/kubelet.py``), with the ServiceAccount token the TokenRequest API issues for it
mounted where an in-cluster client reads it — so the chart's RBAC is what authorizes every call
the operator and the CronJobs make:

1. ``helm install``: the pre-install migration Job runs ``spine db upgrade`` against an empty
   PostgreSQL database; then the operator Deployment's pod runs ``spine operator run``.
2. The weekly enqueue CronJobs fire (``kubectl create job --from=cronjob/…``): their pods run
   ``spine work enqueue … --week latest --source finra-api --chain`` (per tier, the newest week
   FINRA has published).
3. The operator's pipeline Jobs run ``spine run … --source finra-api`` against a FINRA-shaped HTTP
   server whose URL is the chart value ``finra.apiUrl``; each chain reaches COMPLETE with data in
   PostgreSQL, and the doctor CronJob's pod exits 0.
4. The same CronJob again is a no-op (``already enqueued``); a restatement (``spine work retry`` of
   a COMPLETE chained ingest) re-runs the chain; the operator restarted while a Job was deleted
   under it counts the lost attempt and starts the next; a cancel deletes the attempt's Job.
5. ``helm upgrade`` runs the migration hook again, harmlessly; ``helm uninstall`` keeps the CRD
   and the work items.
6. The operator's log has no ``Forbidden``, no chart ServiceAccount was refused anything, and the
   operator's Role grants nothing it did not use (from the API server's audit log).

Watch it: ``make test-slow PYTEST_ARGS='-k helm -s'`` (the steps are printed as they happen).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from market_spine.core.partitions import Tier
from market_spine.core.resource import LABEL_WORK_ITEM
from market_spine.db import migrate
from market_spine.db.engine import make_engine
from market_spine.finra.sample import sample_records
from market_spine.finra.schedule import finra_calendar
from market_spine.kube import client as kube
from tests.operator.harness import wait_for
from tests.support.envtest import free_port
from tests.support.finra_api import FinraApi
from tests.support.k8s import RealCluster
from tests.support.kubectl import Kubectl
from tests.support.kubelet import RUN, Action

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "market-spine"
HELM = ROOT / ".cache" / "helm" / "helm"
RELEASE = "market-spine"  # the fullname is then "market-spine" too
INGEST = "finra.otc_transparency.ingest_week"


def step(message: str) -> None:
    print(f"[helm e2e {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


class Helm:
    def __init__(self, cluster: RealCluster, namespace: str) -> None:
        if not HELM.is_file():
            pytest.skip("no helm binary: run `make helm` (.ci/fetch-helm extracts it into .cache/helm)")
        self.cluster = cluster
        self.namespace = namespace

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(HELM), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        return done


def _publish_latest_weeks(finra: FinraApi) -> dict[Tier, date]:
    """FINRA, as of today, with the newest week it has published in each tier (what `--week latest`
    picks): generated rows in FINRA's format, mixed with every other row kind as FINRA answers."""
    today = datetime.now(UTC).date()
    finra.today = today
    weeks = {tier: finra_calendar().newest_published_week(tier, today) for tier in Tier}
    for seed, (tier, week) in enumerate(weeks.items()):
        finra.publish(week, tier, sample_records(week, tier, symbols=15, seed=seed))
    return weeks


def _db_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _job_finished(kubectl: Kubectl, name: str) -> str | None:
    job = json.loads(kubectl("get", "job", name, "-o", "json").stdout)
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def _states(kubectl: Kubectl) -> dict[str, str]:
    items = json.loads(kubectl("get", "swi", "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("state", "") for i in items}


def _attempts(kubectl: Kubectl) -> dict[str, int]:
    items = json.loads(kubectl("get", "swi", "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("totalAttempts", 0) for i in items}


def _all_complete(kubectl: Kubectl) -> bool:
    return set(_states(kubectl).values()) <= {"COMPLETE"}


def _granted(rendered: list[dict[str, Any]], kind: str, name: str) -> set[tuple[str, str, str]]:
    role = next(d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name)
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _used(cluster: RealCluster, user: str) -> tuple[set[tuple[str, str, str]], list[str]]:
    """(group, resource[/subresource], verb) the audit log shows ``user`` doing, and what it was refused."""
    assert cluster.plane is not None
    used: set[tuple[str, str, str]] = set()
    refused: list[str] = []
    for event in cluster.plane.audit_events():
        if event.get("user", {}).get("username") != user:
            continue
        ref = event.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery (/api, /apis, /version): open to every authenticated user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
        if (event.get("responseStatus") or {}).get("code") == 403:
            refused.append(f"{event['verb']} {event['requestURI']}")
    return used, refused


def test_helm_install_runs_the_weekly_work_to_complete_under_the_charts_own_rbac(
    fresh_cluster: RealCluster, blank_database_url: str, finra: FinraApi, tmp_path: Path
) -> None:
    cluster = fresh_cluster
    namespace = cluster.create_namespace("market-data")
    kubectl = Kubectl(cluster.kubeconfig, namespace)
    helm = Helm(cluster, namespace)
    weeks = _publish_latest_weeks(finra)

    # A work item whose pod no node will take: cancelled while it waits to be scheduled.
    never: set[str] = set()

    def decide(pod: dict[str, Any]) -> Action:
        return None if (pod["metadata"].get("labels") or {}).get(LABEL_WORK_ITEM) in never else RUN

    cluster.kubelet.serve(namespace, decide)
    kubectl("create", "secret", "generic", "market-spine-db", f"--from-literal=url={blank_database_url}")
    health, metrics = free_port(), free_port()
    values = [
        f"--set=finra.apiUrl={finra.url}",
        f"--set=health.port={health}",
        f"--set=metrics.port={metrics}",
        # The doctor checks the newest week due in each tier: the one the CronJobs enqueue.
        "--set=cronjobs.doctor.weeks=1",
        "--set=calendar.publicationGraceDays=0",
        "--set=operator.extraEnv[0].name=SPINE_FINRA_API_RATE_PER_SECOND",
        "--set-string=operator.extraEnv[0].value=1000",
    ]
    try:
        step(f"helm install {RELEASE} into {namespace} (hooks included)")
        installed = helm("install", RELEASE, str(CHART), *values, "--wait=watcher", "--timeout=5m")
        assert "STATUS: deployed" in installed.stdout
        assert _db_revision(blank_database_url) == migrate.head_revision(), "the migration hook did not run"
        assert kubectl("get", "job", "market-spine-migrate", check=False).returncode != 0  # hook-succeeded: deleted

        (operator,) = operators(cluster, namespace)
        step(f"operator pod {operator.name} runs `spine operator run` in-cluster as ServiceAccount {RELEASE}")

        for tier in Tier:
            slug = tier.value.lower().replace("_", "-")
            kubectl("create", "job", f"--from=cronjob/{RELEASE}-enqueue-{slug}", f"enqueue-{slug}-now")
        for tier in Tier:
            slug = tier.value.lower().replace("_", "-")
            assert wait_for(lambda s=slug: _job_finished(kubectl, f"enqueue-{s}-now"), 120, "enqueue") == "Complete"
        step("the enqueue CronJobs' pods created three work items under the CronJob ServiceAccount")

        wait_for(
            lambda: (s := _states(kubectl)) and len(s) == 9 and set(s.values()) == {"COMPLETE"},
            300,
            "ingest → normalize → compute COMPLETE in every tier",
            interval=1.0,
        )
        step("9 work items COMPLETE (3 tiers × ingest, normalize, compute)")
        engine = make_engine(blank_database_url)
        with engine.connect() as conn:
            stages = dict(conn.execute(text("SELECT stage, count(*) FROM core_manifest GROUP BY stage")).all())
            rows = conn.execute(text("SELECT count(*) FROM finra_otc_transparency_raw")).scalar()
            mirrored = dict(conn.execute(text("SELECT state, count(*) FROM core_work_items GROUP BY state")).all())
        engine.dispose()
        assert stages == {"RAW": 3, "NORMALIZED": 3, "CALC": 3}
        assert rows == sum(len(finra.venue_rows(week, tier)) for tier, week in weeks.items())  # ATS rows only
        assert mirrored == {"COMPLETE": 9}
        asked = {f["fieldValue"] for r in finra.data_requests() for f in r.body["compareFilters"]
                 if f["fieldName"] == "weekStartDate"}  # fmt: skip
        assert asked == {week.isoformat() for week in weeks.values()}

        kubectl("create", "job", f"--from=cronjob/{RELEASE}-doctor", "doctor-now")
        assert wait_for(lambda: _job_finished(kubectl, "doctor-now"), 120, "the doctor Job") == "Complete"
        doctor_pod = next(p for p in cluster.kubelet.ran(namespace) if p.name.startswith("doctor-now-"))
        assert doctor_pod.exit_code == 0
        step("the doctor CronJob's pod exited 0: no gaps")

        # An engineer's `spine work …` on the kubernetes backend, with the admin kubeconfig.
        spine = [str(ROOT / ".venv" / "bin" / "spine"), "work"]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SPINE_BACKEND": "kubernetes",
            "SPINE_NAMESPACE": namespace,
            "SPINE_KUBECONFIG": str(cluster.kubeconfig),
        }

        def work(*args: str) -> str:
            return subprocess.run([*spine, *args], env=env, capture_output=True, text=True, check=True).stdout

        # The same CronJob again: the week's item exists, so nothing new is enqueued.
        kubectl("create", "job", f"--from=cronjob/{RELEASE}-enqueue-otc", "enqueue-otc-again")
        assert wait_for(lambda: _job_finished(kubectl, "enqueue-otc-again"), 120, "enqueue again") == "Complete"
        again = next(p for p in cluster.kubelet.ran(namespace) if p.name.startswith("enqueue-otc-again-"))
        assert "already enqueued" in cluster.kubelet.logs(namespace, again.name)
        assert len(_states(kubectl)) == 9
        step("the OTC CronJob fired again: `already enqueued`, still 9 work items")

        # A restatement: re-running a COMPLETE chained ingest re-runs the stages after it.
        partition = ["--week", weeks[Tier.OTC].isoformat(), "--tier", "OTC"]
        work("retry", INGEST, *partition)
        wait_for(
            lambda: (s := _attempts(kubectl)) and sum(n == 2 for n in s.values()) == 3 and _all_complete(kubectl),
            300,
            "the OTC chain re-run after the restatement",
            interval=1.0,
        )
        step("restatement: ingest, normalize and compute of OTC ran again")

        # The operator restarted while an attempt's Job was deleted under it, then a cancel.
        partition = ["--week", "2025-11-10", "--tier", "OTC"]
        name = work("enqueue", INGEST, *partition, "--source", "finra-api", "--backoff-seconds", "1").split()[1]
        never.add(name)  # its pods stay Pending: never scheduled
        wait_for(lambda: _states(kubectl).get(name) == "RUNNING", 60, f"{name} RUNNING")
        kubectl("scale", f"deployment/{RELEASE}", "--replicas=0")
        wait_for(lambda: _operator_gone(cluster, namespace), 120, "the operator pod to stop")
        kubectl("delete", "job", f"{name}-a1")
        kubectl("scale", f"deployment/{RELEASE}", "--replicas=1")
        kubectl("rollout", "status", f"deployment/{RELEASE}", "--timeout=120s")
        wait_for(lambda: _attempts(kubectl).get(name) == 2, 120, f"{name}'s second attempt", interval=0.5)
        status = json.loads(kubectl("get", "swi", name, "-o", "json").stdout)["status"]
        assert [r.get("reason") for r in status["history"]][:1] == ["JobDeleted"]
        step(f"operator restarted: {name}'s deleted Job counted as a failed attempt; attempt 2 started")
        work("cancel", INGEST, *partition)
        wait_for(lambda: _states(kubectl).get(name) == "CANCELLED", 60, f"{name} CANCELLED")
        wait_for(
            lambda: not kubectl("get", "jobs", "-l", f"{LABEL_WORK_ITEM}={name}", "-o", "name").stdout.strip(),
            60,
            "the cancelled attempt's Job to be deleted",
        )
        step(f"{name} cancelled; its Job deleted by the operator")

        step("helm upgrade: the migration hook runs again")
        upgraded = helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--wait=watcher", "--timeout=5m")
        assert "has been upgraded" in upgraded.stdout
        assert _db_revision(blank_database_url) == migrate.head_revision()
        assert set(_states(kubectl).values()) == {"COMPLETE", "CANCELLED"}

        log = "".join(cluster.kubelet.logs(namespace, p.name) for p in operators(cluster, namespace))
        assert "operator starting" in log
        assert "Forbidden" not in log, [line for line in log.splitlines() if "Forbidden" in line][:5]
    except BaseException:
        subprocess.run(  # best effort, so the release does not outlive a failed test
            [str(HELM), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "uninstall", RELEASE],
            capture_output=True, check=False, timeout=300,
        )  # fmt: skip
        raise
    rendered = list(
        yaml.safe_load_all(
            subprocess.run(
                [str(HELM), "template", RELEASE, str(CHART), "-n", namespace, *values],
                capture_output=True, text=True, check=True,
            ).stdout
        )
    )  # fmt: skip
    step("helm uninstall")
    helm("uninstall", RELEASE, "--wait", "--timeout=2m")

    # What the release leaves behind: the CRD (crds.keep) and the work items in it.
    crd = cluster.api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/spineworkitems.spine.marketspine.io")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(_states(kubectl)) == 10
    wait_for(lambda: _operator_gone(cluster, namespace), 60, "the operator pod to be gone")

    # RBAC, from the audit log: nothing refused, and the operator's grants all used.
    rendered = [d for d in rendered if d]
    for account in (RELEASE, f"{RELEASE}-cronjob"):
        _, refused = _used(cluster, f"system:serviceaccount:{namespace}:{account}")
        assert refused == [], f"{account} was refused: {refused}"
    used, _ = _used(cluster, f"system:serviceaccount:{namespace}:{RELEASE}")
    granted = _granted(rendered, "Role", f"{RELEASE}-operator") | _granted(
        rendered, "ClusterRole", f"{namespace}-{RELEASE}-operator"
    )
    unused = sorted(granted - used)
    assert unused == [], f"the operator's RBAC grants what it never uses: {unused}"
    used_by_cronjobs, _ = _used(cluster, f"system:serviceaccount:{namespace}:{RELEASE}-cronjob")
    unused = sorted(_granted(rendered, "Role", f"{RELEASE}-cronjob") - used_by_cronjobs)
    assert unused == [], f"the CronJobs' RBAC grants what they never use: {unused}"


def operators(cluster: RealCluster, namespace: str) -> list[Any]:
    """Every operator pod the kubelet ran in ``namespace`` (before and after a restart)."""
    return [p for p in cluster.kubelet.ran(namespace) if p.labels.get("app.kubernetes.io/component") == "operator"]


def _operator_gone(cluster: RealCluster, namespace: str) -> bool:
    try:
        pods = cluster.api.list(kube.pods_path(namespace), label_selector="app.kubernetes.io/component=operator")
    except kube.KubeError:
        return False
    time.sleep(0.2)
    return not pods
