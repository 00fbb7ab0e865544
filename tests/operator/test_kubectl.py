"""What Kubernetes itself accepts and shows, checked on a real API server with the real kubectl:
the CRD installs, every documented example is accepted, every invalid one is refused with the
message its ``# refused:`` line documents (on create, or on update for two-document examples),
``kubectl get swi`` (and ``-o wide``), ``kubectl describe`` (Events) and ``kubectl explain`` show
what the docs say, and deleting a work item garbage-collects its Jobs and their pods.

These need a real API server (the emulator validates nothing): they skip without one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from market_spine.core.workitem import WorkItemSpec
from tests.operator.checks import consistent
from tests.operator.harness import JobController, Namespace, OperatorProcess, wait_for
from tests.support import envtest
from tests.support.kubectl import Kubectl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
GOOD = sorted(EXAMPLES.glob("*.yaml"))
BAD = sorted((EXAMPLES / "invalid").glob("*.yaml"))
INGEST = "finra.otc_transparency.ingest_week"


@pytest.fixture
def kubectl(ns: Namespace) -> Kubectl:
    if not ns.cluster.real:
        pytest.skip(f"kubectl against the emulator proves nothing; {envtest.skip_reason()}")
    return Kubectl(ns.cluster.kubeconfig, ns.name)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_crd_applies_with_kubectl_and_is_established(kubectl: Kubectl) -> None:
    # The session applied it already: applying again is what `kubectl apply -f crds/` does on an
    # upgrade, and it must be accepted as is.
    done = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    assert "spineworkitems.spine.marketspine.io serverside-applied" in done.stdout
    established = kubectl(
        "get", "crd", "spineworkitems.spine.marketspine.io", "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    )  # fmt: skip
    assert established.stdout == "True"


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_every_example_is_accepted(kubectl: Kubectl, path: Path) -> None:
    (obj,) = _documents(path)
    done = kubectl("create", "-f", str(path))
    assert f"spineworkitem.spine.marketspine.io/{obj['metadata']['name']} created" in done.stdout
    stored = kubectl("get", "swi", obj["metadata"]["name"], "-o", "yaml")
    assert yaml.safe_load(stored.stdout)["spec"]["pipeline"] == obj["spec"]["pipeline"]


def _documented(path: Path) -> str:
    match = re.search(r"^# refused: (.+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} does not say why it is refused (a '# refused: …' line)"
    return match.group(1).strip()


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_every_invalid_example_is_refused_with_its_documented_message(kubectl: Kubectl, path: Path) -> None:
    documents = _documents(path)
    if len(documents) == 2:  # an update: the stored object, then the change a user applies
        first, change = documents
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(first))
        refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(change), check=False)
    else:
        refused = kubectl("create", "-f", str(path), check=False)
    assert refused.returncode != 0, f"{path.name} was accepted: {refused.stdout}"
    assert _documented(path) in refused.stderr, refused.stderr


def test_get_wide_describe_and_explain(
    kubectl: Kubectl, ns: Namespace, operator: OperatorProcess, jobs: JobController
) -> None:
    spec = WorkItemSpec.model_validate(
        {
            "pipeline": INGEST,
            "partition": {"week": "2025-11-10", "tier": "OTC"},
            "params": {"source": "finra-api"},
            "retry": {"backoffSeconds": 60},
        }
    )
    name = ns.enqueue(spec)
    ns.wait_state(name, "RUNNING")
    jobs.fail(f"{name}-a1", message="SourceUnavailable: FINRA API answered 503 3 times", exit_code=5)
    ns.wait_state(name, "RETRY_WAIT")
    wait_for(lambda: len(ns.events(name)) >= 2, what="the Events of the failed attempt")

    table = kubectl("get", "swi").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == [
        "NAME", "PIPELINE", "WEEK", "TIER", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "AGE",
    ]  # fmt: skip
    row = re.split(r"\s{2,}", table[1].strip())
    assert row[:6] == [name, INGEST, "2025-11-10", "OTC", "RETRY_WAIT", "1"]
    assert row[6] == ns.item(name)["status"]["nextAttemptAt"]

    wide = kubectl("get", "swi", "-o", "wide").stdout.splitlines()
    assert re.split(r"\s{2,}", wide[0].strip())[-5:] == ["PRIORITY", "JOB", "READY", "REASON", "LAST ERROR"]
    assert re.split(r"\s{2,}", wide[1].strip())[-5:] == [
        "100", f"{name}-a1", "False", "JobFailed", "exit code 5: SourceUnavailable: FINRA API answered 503 3 times",
    ]  # fmt: skip

    described = kubectl("describe", "swi", name).stdout
    events = described[described.index("Events:") :]
    assert re.search(r"Normal\s+Started\s+\S+\s+market-spine-operator\s+attempt 1/3 started: Job", events), events
    assert re.search(r"Warning\s+AttemptFailed\s+\S+\s+market-spine-operator\s+attempt 1/3 failed", events), events

    explained = kubectl("explain", "swi.spec.partition").stdout
    assert "The partition to process: one FINRA trading week of one tier. Immutable." in explained
    assert "tier" in explained and "week" in explained
    assert "DESCRIPTION" in kubectl("explain", "spineworkitem.status.nextAttemptAt").stdout
    assert "run a RETRY_WAIT work item" in " ".join(kubectl("explain", "swi.spec.wakeRequest").stdout.split())


def test_deleting_a_work_item_garbage_collects_its_jobs_and_pods(
    kubectl: Kubectl, ns: Namespace, operator: OperatorProcess, jobs: JobController, engine: Engine
) -> None:
    spec = WorkItemSpec.model_validate(
        {
            "pipeline": INGEST,
            "partition": {"week": "2025-11-10", "tier": "OTC"},
            "params": {"source": "finra-api"},
        }
    )
    name = ns.enqueue(spec)
    ns.wait_state(name, "RUNNING")
    jobs.start(f"{name}-a1")
    consistent(ns, name, engine)
    assert ns.cluster.kubelet.pods_of_job(ns.name, f"{name}-a1")
    kubectl("delete", "swi", name, "--wait=false")
    # The garbage collector follows the ownerReferences: work item → Job → pod.
    wait_for(lambda: not ns.jobs(name), timeout=60, what="the Job to be garbage-collected")
    wait_for(
        lambda: not ns.cluster.kubelet.pods_of_job(ns.name, f"{name}-a1"),
        timeout=60,
        what="the pod to be garbage-collected",
    )
