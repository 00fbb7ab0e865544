"""End-to-end fixtures: a kind cluster (pytest-kind), the image built and loaded, PostgreSQL, a file
server, and the chart installed with the real Helm binary.

Requirements are checked BEFORE pytest-kind's ``kind_cluster`` fixture is requested, because that
fixture tries to download kind and errors (rather than skips) where Docker or the network are
missing. Missing Docker, kind, kubectl or pytest-kind make every test skip with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = ROOT / "helm" / "market-spine"
IMAGE = "market-spine:e2e"
NAMESPACE = "spine-e2e"
RELEASE = "ms"
DATABASE_URL = f"postgresql://spine:spine-e2e@postgres.{NAMESPACE}.svc.cluster.local:5432/spine"


@dataclass(frozen=True)
class Tools:
    docker: str
    kind: str
    kubectl: str


def _missing_requirement() -> tuple[str | None, Tools | None]:
    docker = shutil.which("docker")
    if docker is None:
        return "no `docker` binary on PATH: the e2e suite needs a Docker engine for kind", None
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker info` failed ({exc}): no usable Docker engine for kind", None
    if info.returncode != 0:
        first = (info.stderr.strip().splitlines() or ["no output"])[0]
        return f"`docker info` failed: {first}", None
    kind = shutil.which("kind")
    if kind is None:
        return "no `kind` binary on PATH (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)", None
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "no `kubectl` binary on PATH", None
    if importlib.util.find_spec("pytest_kind") is None:
        return "pytest-kind is not installed (pip install -e '.[e2e]', or run `make e2e`)", None
    return None, Tools(docker, kind, kubectl)


@pytest.fixture(scope="session")
def tools() -> Tools:
    """Docker, kind and kubectl, or a skip that says which one is missing."""
    reason, found = _missing_requirement()
    if reason is not None or found is None:
        pytest.skip(reason or "e2e requirements missing")
    return found


@dataclass
class Kube:
    """kubectl against the kind cluster, in the suite's namespace by default."""

    kubectl: str
    kubeconfig: Path
    namespace: str = NAMESPACE

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300, namespaced: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl, *(["--namespace", self.namespace] if namespaced else []), *args]
        out = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str | dict[str, Any] | Path) -> None:
        if isinstance(manifest, Path):
            self.run("apply", "-f", str(manifest))
        else:
            text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
            self.run("apply", "-f", "-", input=text)

    def psql(self, sql: str) -> str:
        """Run SQL in the suite's PostgreSQL; returns unaligned, tuples-only output."""
        out = self.run("exec", "deploy/postgres", "--", "psql", "-U", "spine", "-d", "spine", "-v",
                       "ON_ERROR_STOP=1", "-tAc", sql)  # fmt: skip
        return out.stdout.strip()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 600, interval: float = 3) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


@pytest.fixture(scope="session")
def cluster(tools: Tools, request: pytest.FixtureRequest) -> Any:
    """pytest-kind's cluster, requested only once Docker and kind are known to work."""
    # Use the kind and kubectl on PATH rather than letting pytest-kind download old ones.
    if not request.config.getoption("kind_bin", None):
        request.config.option.kind_bin = tools.kind
    if not request.config.getoption("kind_kubectl_bin", None):
        request.config.option.kind_kubectl_bin = tools.kubectl
    return request.getfixturevalue("kind_cluster")


@pytest.fixture(scope="session")
def kube(cluster: Any, tools: Tools) -> Kube:
    return Kube(tools.kubectl, Path(cluster.kubeconfig_path))


@pytest.fixture(scope="session")
def helm_bin(tools: Tools) -> str:
    """The real Helm binary (.ci/fetch-helm), fetched only once the suite is known to run."""
    out = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "fetch-helm")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def helm(helm_bin: str, kube: Kube) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        cmd = [helm_bin, "--kubeconfig", str(kube.kubeconfig), "--namespace", NAMESPACE, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    return run


@pytest.fixture(scope="session")
def image(tools: Tools, cluster: Any) -> str:
    """The project's image, built from the repository's Dockerfile and loaded into kind."""
    build = subprocess.run(
        [tools.docker, "build", "--build-arg", "VERSION=0.0.0-e2e", "-t", IMAGE, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    cluster.load_docker_image(IMAGE)
    return IMAGE


@pytest.fixture(scope="session")
def namespace(kube: Kube) -> Iterator[str]:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    if not os.environ.get("SPINE_E2E_KEEP_CLUSTER"):
        kube.run("delete", "namespace", NAMESPACE, "--wait=false", namespaced=False, check=False)


@pytest.fixture(scope="session")
def postgres(kube: Kube, namespace: str) -> str:
    kube.apply(HERE / "postgres.yaml")
    kube.run("rollout", "status", "deployment/postgres", "--timeout=300s", timeout=330)
    wait_for("PostgreSQL to accept queries", lambda: kube.run(
        "exec", "deploy/postgres", "--", "pg_isready", "-U", "spine", "-d", "spine", "-h", "127.0.0.1", check=False
    ).returncode == 0, timeout=120)  # fmt: skip
    return DATABASE_URL
