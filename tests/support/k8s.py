"""Fixtures for a real Kubernetes API server: one control plane per test session, and its kubelet.

``real_cluster`` is the control plane started from ``KUBEBUILDER_ASSETS`` (``tests/support/envtest.py``,
with kube-controller-manager: the real Job, CronJob and garbage-collector controllers) or the
cluster named by ``SPINE_TEST_KUBECONFIG`` (a control plane with controllers but no scheduler or
kubelet of its own, e.g. one started by ``../shared/k8s/start-control-plane.sh``). Either way a
:class:`~tests.support.kubelet.ProcessKubelet` registers a Node and plays scheduler and kubelet.
Without either, a test that needs a real API server skips, naming ``KUBEBUILDER_ASSETS``.

Every test that used the real API server is counted, and the terminal summary says how many
ran against it, with the server's version.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import Configuration

from market_spine.kube import client as kube
from market_spine.kube.client import KubeClient, load_configuration
from tests.support import envtest
from tests.support.kubelet import ProcessKubelet

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "spine.marketspine.io_spineworkitems.yaml"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

_USED_BY: set[str] = set()
_VERSION: list[str] = []


@dataclass
class RealCluster:
    """A real API server, its admin credentials and the node that runs its pods."""

    kubeconfig: Path
    configuration: Configuration
    api: KubeClient
    kubelet: ProcessKubelet
    version: str
    plane: envtest.ControlPlane | None = None  # None for SPINE_TEST_KUBECONFIG
    _namespaces: list[str] = field(default_factory=list)

    @property
    def server(self) -> str:
        return self.api.server

    def create_namespace(self, prefix: str = "spine-test") -> str:
        """A throw-away namespace, ready for pods (its ``default`` ServiceAccount exists)."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(kube.NotFoundError):
                self.api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
                return name
            time.sleep(0.05)
        raise RuntimeError(f"namespace {name} got no default ServiceAccount: is kube-controller-manager running?")

    def delete_namespace(self, name: str) -> None:
        self.kubelet.leave(name)
        with contextlib.suppress(kube.KubeError):
            self.api.delete(f"/api/v1/namespaces/{name}")

    def token(self, namespace: str, account: str) -> str:
        """A ServiceAccount token from the TokenRequest API."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}}
        answer = self.api.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", body)
        return str(answer["status"]["token"])

    def service_account_kubeconfig(self, path: Path, namespace: str, account: str) -> Path:
        """A kubeconfig acting as ``namespace/account``: its RBAC and nothing more."""
        ca = self.configuration.ssl_ca_cert
        if ca is None:
            raise RuntimeError("the cluster's kubeconfig names no certificate authority")
        return envtest.write_kubeconfig(path, self.server, Path(ca), self.token(namespace, account), namespace)

    def apply_crd(self) -> None:
        apply_crd(self.api)


def apply_crd(api: KubeClient) -> None:
    """Create (or replace) the SpineWorkItem CRD from ``crds/`` and wait until it is established."""
    import yaml

    crd = yaml.safe_load(CRD_FILE.read_text())
    name = crd["metadata"]["name"]
    try:
        api.create(CRDS, crd)
    except kube.AlreadyExistsError:
        current = api.get(f"{CRDS}/{name}")
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        api.request("PUT", f"{CRDS}/{name}", body=crd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = (api.get(f"{CRDS}/{name}").get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise RuntimeError(f"CRD {name} was not established within 60s")


def available() -> bool:
    return bool(os.environ.get(envtest.KUBECONFIG_ENV)) or envtest.assets() is not None


@contextlib.contextmanager
def _cluster(kubeconfig: Path | None, binaries: Path | None) -> Iterator[RealCluster]:
    """A real API server with a process kubelet: the cluster at ``kubeconfig``, or a new control
    plane started from ``binaries``."""
    plane: envtest.ControlPlane | None = None
    if kubeconfig is None:
        assert binaries is not None
        plane = envtest.ControlPlane(binaries).start(controllers=True)
        kubeconfig = plane.kubeconfig
    kubelet: ProcessKubelet | None = None
    try:
        configuration = load_configuration(kubeconfig)
        api = KubeClient(configuration, pool_size=32)
        version = str(api.get("/version").get("gitVersion", "?"))
        kubelet = ProcessKubelet(KubeClient(load_configuration(kubeconfig), pool_size=32)).start()
        yield RealCluster(kubeconfig, configuration, api, kubelet, version, plane)
    finally:
        if kubelet is not None:
            kubelet.stop()
        if plane is not None:
            plane.stop()


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    """The session's real API server (see the module docstring), with the CRD applied, or skip."""
    external = os.environ.get(envtest.KUBECONFIG_ENV)
    binaries = envtest.assets()
    if not external and binaries is None:
        pytest.skip(envtest.skip_reason())
    with _cluster(Path(external) if external else None, binaries) as cluster:
        cluster.apply_crd()
        _VERSION[:] = [cluster.version]
        yield cluster


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest) -> Iterator[RealCluster]:
    """A control plane of this test's own, with nothing installed (not even the CRD): for what
    must start from an empty cluster, such as ``helm install``. Needs ``KUBEBUILDER_ASSETS``."""
    binaries = envtest.assets()
    if binaries is None:
        pytest.skip(f"needs a control plane of its own: {envtest.skip_reason()}")
    _USED_BY.add(request.node.nodeid)
    with _cluster(None, binaries) as cluster:
        _VERSION[:] = [cluster.version]
        yield cluster


@pytest.fixture
def real_api(real_cluster: RealCluster, request: pytest.FixtureRequest) -> RealCluster:
    """The real cluster, counting this test among those that ran against it."""
    _USED_BY.add(request.node.nodeid)
    return real_cluster


def record_use(nodeid: str) -> None:
    _USED_BY.add(nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _USED_BY:
        where = os.environ.get(envtest.KUBECONFIG_ENV) or os.environ.get(envtest.ASSETS_ENV, "")
        version = _VERSION[0] if _VERSION else "?"
        terminalreporter.write_line(
            f"real kube-apiserver: {len(_USED_BY)} tests ran against Kubernetes {version} ({where})", bold=True
        )
    elif available():
        terminalreporter.write_line("real kube-apiserver: no selected test needed one")
    else:
        terminalreporter.write_line(f"real kube-apiserver: no test ran against one ({envtest.skip_reason()})")
