"""docs/ops/install.md, run command by command against a real control plane.

Every command of every ``bash`` block is run, in the page's order, by ``bash`` with the real
``kubectl``, ``helm`` and ``spine`` on PATH and the admin kubeconfig, in a control plane of its own
(a fresh, empty cluster: what a reader starts from), with a process kubelet running every pod of
``market-data``. Each must exit 0. Documented outputs (``text`` blocks of ``$ command`` and what it
prints) must be printed. What cannot run here is listed in :data:`INSTEAD` with the reason and the
nearest equivalent the test runs — and a command of the page that is neither run nor listed fails
the test, so the page and this test cannot drift apart.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier
from market_spine.finra.sample import sample_records
from market_spine.finra.schedule import finra_calendar
from tests.docs.test_doc_commands import code_blocks
from tests.operator.harness import wait_for
from tests.support.envtest import free_port
from tests.support.finra_api import FinraApi
from tests.support.k8s import CRDS, RealCluster
from tests.support.kubectl import kubectl_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ops" / "install.md"
HELM = ROOT / ".cache" / "helm" / "helm"
NAMESPACE = "market-data"


@dataclass
class Run:
    """What the test needs to run the page: the shell's environment and the test's own servers."""

    env: dict[str, str]
    cluster: RealCluster
    database_url: str
    finra: FinraApi
    helm_sets: list[str]
    log: list[str]

    def shell(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.log.append(f"$ {command}")
        done = subprocess.run(
            ["bash", "-c", command], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        if check:
            assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done


Instead = Callable[[Run, str], None]


def _secret(run: Run, command: str) -> None:
    # The page's PostgreSQL does not exist here: the same Secret, holding the test database's URL.
    run.shell(f"kubectl -n {NAMESPACE} create secret generic market-spine-db --from-literal=url={run.database_url}")


def _helm_with_test_values(run: Run, command: str) -> None:
    # Pods share one host's ports here, and FINRA is the test double: add those values.
    run.shell(command + " " + " ".join(run.helm_sets))


def _watch(run: Run, command: str) -> None:
    # A watch never ends by itself: wait for what it would show, the OTC chain COMPLETE.
    def done() -> bool:
        listed = run.shell(f"kubectl -n {NAMESPACE} get swi -o jsonpath='{{.items[*].status.state}}'").stdout
        return listed.split() == ["COMPLETE"] * 3

    wait_for(done, 300, "ingest, normalize and compute of the newest OTC week COMPLETE", interval=1.0)


def _logs(run: Run, command: str) -> None:
    # `kubectl logs` asks the kubelet's API, which the process kubelet does not serve: read the
    # container log it keeps, and check it is what the page promises.
    job = command.rsplit("job/", 1)[1].split(maxsplit=1)[0]
    pods = [p for p in run.cluster.kubelet.ran(NAMESPACE) if p.labels.get("batch.kubernetes.io/job-name") == job]
    assert pods, f"no pod of Job {job} ran"
    log = run.cluster.kubelet.logs(NAMESPACE, pods[-1].name)
    assert "spine run finra.otc_transparency.ingest_week" in log, log  # each gap with its command
    run.log.append(f"(kubelet log of {pods[-1].name}: {len(log.splitlines())} lines)")


def _not_here(reason: str) -> Instead:
    def skip(run: Run, command: str) -> None:
        run.log.append(f"not run here ({reason}): {command}")

    return skip


# (pattern of a command on the page, what the test does instead). Everything else runs as written.
INSTEAD: list[tuple[re.Pattern[str], Instead]] = [
    (
        re.compile(r"^docker (build|push) "),
        _not_here("no Docker engine: the process kubelet runs this checkout's spine"),
    ),
    (re.compile(r"create secret generic market-spine-db"), _secret),
    (re.compile(r"--set ha\.enabled=true"), _not_here("two operator pods on one host would share ports: see test_ha")),
    (re.compile(r"^helm (install|upgrade) "), _helm_with_test_values),
    (re.compile(r"get swi --watch"), _watch),
    (re.compile(r"^kubectl .* logs .*job/"), _logs),
]


def page_commands() -> Iterator[tuple[int, str]]:
    """(line, command) of every ``bash`` block, continuation lines joined, comments dropped."""
    for language, first, lines in code_blocks(DOC.read_text()):
        if language != "bash":
            continue
        joined = ""
        for offset, line in enumerate(lines):
            joined += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
            if line.rstrip().endswith("\\"):
                continue
            command = re.sub(r"\s+#.*$", "", joined).strip()
            joined = ""
            if command and not command.startswith("#"):
                yield first + offset, re.sub(r"\s+", " ", command)


def documented_outputs() -> Iterator[tuple[str, list[str]]]:
    """(command, lines it prints) from ``text`` blocks written as a terminal session."""
    for language, _, lines in code_blocks(DOC.read_text()):
        if language == "text" and lines and lines[0].startswith("$ "):
            yield lines[0][2:], [line for line in lines[1:] if line.strip()]


def test_every_command_of_the_install_page_runs_on_a_real_control_plane(
    fresh_cluster: RealCluster, blank_database_url: str, finra: FinraApi, tmp_path: Path
) -> None:
    if not HELM.is_file():
        pytest.skip("no helm binary: run `make helm`")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("kubectl", kubectl_binary()), ("helm", str(HELM)), ("spine", str(ROOT / ".venv/bin/spine"))):
        (bin_dir / name).symlink_to(target)
    today = datetime.now(UTC).date()
    finra.today = today
    for seed, tier in enumerate(Tier):
        week = finra_calendar().newest_published_week(tier, today)
        finra.publish(week, tier, sample_records(week, tier, symbols=12, seed=seed))
    run = Run(
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "KUBECONFIG": str(fresh_cluster.kubeconfig),
        },
        cluster=fresh_cluster,
        database_url=blank_database_url,
        finra=finra,
        helm_sets=[
            f"--set finra.apiUrl={finra.url}",
            f"--set health.port={free_port()}",
            f"--set metrics.port={free_port()}",
        ],
        log=[],
    )
    fresh_cluster.kubelet.serve(NAMESPACE)
    ran = 0
    try:
        for line, command in page_commands():
            instead = next((fn for pattern, fn in INSTEAD if pattern.search(command)), None)
            if instead is None:
                run.shell(command)
            else:
                instead(run, command)
            ran += 1
            print(f"install.md:{line}: {run.log[-1]}")
        for command, expected in documented_outputs():
            done = run.shell(command, check=False)
            assert done.returncode != 0 or not expected, command
            printed = (done.stdout + done.stderr).splitlines()
            for wanted in expected:
                assert wanted in printed, f"{command!r} does not print {wanted!r}:\n{done.stderr}"
    finally:
        print("\n".join(run.log))
    assert ran >= 12, f"only {ran} commands found in {DOC}"

    # What the page says uninstall keeps: the CRD and the work items.
    crd = fresh_cluster.api.get(f"{CRDS}/spineworkitems.spine.marketspine.io")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    states = run.shell(f"kubectl -n {NAMESPACE} get swi -o jsonpath='{{.items[*].status.state}}'").stdout.split()
    assert states == ["COMPLETE"] * 3
