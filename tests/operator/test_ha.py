"""HA on a real API server: two operator processes with Kopf peering, under the chart's RBAC.

Two ``spine operator run`` processes, each with its own ``POD_ID``, ports and peering priority,
authenticated as the chart's operator ServiceAccount (the chart's Role and ClusterRole with
``ha.enabled``, and its KopfPeering CRD and object, applied from ``helm template``). Only the
replica with the higher priority acts — every Event about the work comes from it: a stronger one
that joins pre-empts the first at once, and when it stops the first takes over again. Every work
item ends COMPLETE with exactly one Job per attempt. Pipeline pods are played by the process
kubelet as containers that exit 0, so the real Job controller completes their Jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from market_spine.core.partitions import Tier
from market_spine.core.resource import manifest
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.kube import client as kube
from tests.operator.checks import one_job_per_attempt
from tests.operator.harness import Namespace, wait_for
from tests.support import envtest
from tests.support.envtest import free_port
from tests.support.kubectl import Kubectl
from tests.support.kubelet import Exit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "market-spine"
HELM = ROOT / ".cache" / "helm" / "helm"
RELEASE = "ha"
ACCOUNT = f"{RELEASE}-market-spine"
PEERING = "market-spine"


def _chart_objects(namespace: str) -> list[dict[str, object]]:
    """The chart's operator RBAC, ServiceAccount, Kopf peering CRD and KopfPeering object (HA on)."""
    if not HELM.is_file():
        pytest.skip("no helm binary: run `make helm`")
    rendered = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "-n", namespace, "--set", "ha.enabled=true",
         "--set", "operator.replicas=2"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    wanted = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount", "KopfPeering"}
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    keep = [d for d in objects if d["kind"] in wanted and d["metadata"]["name"].find("cronjob") < 0]
    keep += [d for d in objects if d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == "kopf.dev"]
    return keep


class Operators:
    """Operator processes started as ``spine operator run`` would be in two pods."""

    def __init__(self, ns: Namespace, kubeconfig: Path, database_url: str, folder: Path) -> None:
        self.ns = ns
        self.kubeconfig = kubeconfig
        self.database_url = database_url
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_ports: dict[str, int] = {}

    def start(self, pod_id: str, priority: int) -> None:
        env = {
            "PYTHONUNBUFFERED": "1",
            "SPINE_PEERING_PRIORITY": str(priority),
            "PATH": os.environ["PATH"],
            "HOME": str(self.folder),
            "POD_ID": pod_id,
            "SPINE_BACKEND": "kubernetes",
            "SPINE_NAMESPACE": self.ns.name,
            "SPINE_KUBECONFIG": str(self.kubeconfig),
            "SPINE_DATABASE_URL": self.database_url,
            "SPINE_PEERING": PEERING,
            "SPINE_HEALTH_PORT": str(free_port()),
            "SPINE_METRICS_PORT": str(free_port()),
            "SPINE_RESYNC_INTERVAL_SECONDS": "3600",
        }
        self.metrics_ports[pod_id] = int(env["SPINE_METRICS_PORT"])
        log = (self.folder / f"{pod_id}.log").open("wb")
        self.processes[pod_id] = subprocess.Popen(
            [str(Path(sys.executable).parent / "spine"), "operator", "run"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
        )  # fmt: skip

    def decisions(self, pod_id: str) -> float:
        """``market_spine_reconciles_total`` from the replica's /metrics: every decision it made."""
        url = f"http://127.0.0.1:{self.metrics_ports[pod_id]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        return sum(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith("market_spine_reconciles_total")
        )

    def log(self, pod_id: str) -> str:
        return (self.folder / f"{pod_id}.log").read_text(errors="replace")

    def stop(self, pod_id: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(pod_id)
        process.send_signal(sig)
        process.wait(timeout=60)

    def stop_all(self) -> None:
        for pod_id in list(self.processes):
            self.stop(pod_id, signal.SIGKILL)


@pytest.fixture
def operators(ns: Namespace, database_url: str, tmp_path: Path) -> Iterator[Operators]:
    if not ns.cluster.real:
        pytest.skip(f"peering needs a real API server; {envtest.skip_reason()}")
    assert ns.cluster.server is not None
    kubectl = Kubectl(ns.cluster.kubeconfig, ns.name)
    objects = _chart_objects(ns.name)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([o for o in objects if o not in crds]))
    kubeconfig = ns.cluster.server.service_account_kubeconfig(tmp_path / "operator.kubeconfig", ns.name, ACCOUNT)
    running = Operators(ns, kubeconfig, database_url, tmp_path)
    yield running
    running.stop_all()


def _peers(ns: Namespace) -> dict[str, int]:
    try:
        peering = ns.api.get(f"/apis/kopf.dev/v1/namespaces/{ns.name}/kopfpeerings/{PEERING}")
    except kube.NotFoundError:
        return {}
    return {pid: int(info["priority"]) for pid, info in (peering.get("status") or {}).items() if info}


def _enqueue(ns: Namespace, start: date, count: int, desired_at: datetime | None = None) -> list[str]:
    specs = [
        WorkItemSpec(
            pipeline="finra.otc_transparency.ingest_week",
            partition=FinraPartition(week=start - timedelta(weeks=n), tier=Tier.OTC),
            params={"source": "finra-api"},
            desired_at=desired_at,
        )
        for n in range(count)
    ]
    return [ns.api.create(kube.swi_path(ns.name), manifest(s, ns.name))["metadata"]["name"] for s in specs]


def _reporters(ns: Namespace, names: list[str], but: tuple[str, ...] = ()) -> set[str]:
    """Which operator replicas posted Events about these work items (leaving out reasons ``but``)."""
    events = ns.api.list(kube.events_path(ns.name))
    return {
        e.get("reportingInstance", "")
        for e in events
        if e.get("reportingComponent") == "market-spine-operator"
        and e["involvedObject"]["name"] in names
        and e["reason"] not in but
    }


def _complete(ns: Namespace, names: list[str]) -> bool:
    states = {o["metadata"]["name"]: (o.get("status") or {}).get("state") for o in ns.items()}
    return all(states.get(n) == "COMPLETE" for n in names)


def test_two_peered_operators_only_one_acts_and_the_other_takes_over(ns: Namespace, operators: Operators) -> None:
    ns.cluster.kubelet.serve(ns.name, lambda _pod: Exit(0))  # every pipeline container exits 0
    operators.start("operator-a", priority=100)
    wait_for(lambda: "operator-a" in _peers(ns), 60, "operator-a in the KopfPeering")
    first = _enqueue(ns, date(2025, 12, 15), 3)
    wait_for(lambda: _complete(ns, first), 120, "operator-a alone completes the first items", interval=0.5)
    assert _reporters(ns, first) == {"operator-a"}

    # Items operator-a already knows, due a little later: its own timers would start them.
    due = datetime.now(UTC) + timedelta(seconds=20)
    delayed = _enqueue(ns, date(2022, 12, 19), 2, desired_at=due)
    wait_for(lambda: _reporters(ns, delayed) == {"operator-a"}, 60, "operator-a to accept the delayed items")

    # A stronger replica appears (half of all rolling updates): the first one stands by at once,
    # and neither its timers nor its queue start anything from then on.
    operators.start("operator-b", priority=200)
    wait_for(lambda: "operator-b" in _peers(ns), 60, "operator-b in the KopfPeering")
    wait_for(lambda: "peering: standing by" in operators.log("operator-a"), 60, "operator-a to stand by")
    assert datetime.now(UTC) < due, "operator-b took too long to join for this test to mean anything"
    standing_by = operators.decisions("operator-a")
    second = _enqueue(ns, date(2024, 12, 16), 3)
    wait_for(lambda: _complete(ns, second + delayed), 120, "operator-b completes the next items", interval=0.5)
    assert _reporters(ns, second) == {"operator-b"}, "the replica standing by acted"
    assert _reporters(ns, delayed, but=("Accepted",)) == {"operator-b"}, "the replica standing by acted"
    assert operators.decisions("operator-a") == standing_by, "the replica standing by made decisions"

    # The active one stops (SIGTERM, as a rolling update deletes its pod): the other takes over.
    operators.stop("operator-b")
    wait_for(lambda: "operator-b" not in _peers(ns), 60, "operator-b to leave the peering")
    third = _enqueue(ns, date(2023, 12, 18), 3)
    wait_for(lambda: _complete(ns, third), 120, "operator-a takes over and completes the rest", interval=0.5)
    assert _reporters(ns, third) == {"operator-a"}

    for name in first + delayed + second + third:
        assert one_job_per_attempt(ns, name).total_attempts == 1, name
    assert len(ns.jobs()) == 11
    for pod_id in ("operator-a", "operator-b"):
        assert "Forbidden" not in operators.log(pod_id), operators.log(pod_id)
