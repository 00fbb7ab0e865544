"""Fixtures of the operator suite: a Kubernetes API, a namespace per test, the real operator.

By default the API is the KMock-based emulator (``tests/operator/emulator.py``) on loopback, one
per test session. With ``SPINE_TEST_KUBECONFIG=/path/to/kubeconfig`` the same tests run against
that cluster instead: the CRD from ``crds/`` is applied, each test gets a throw-away namespace, and
the operator runs in-process against the cluster with the same kubeconfig. Both use a real
PostgreSQL (the ``database_url`` fixture: a fresh migrated database per test).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from market_spine.config import Settings
from market_spine.kube import client as kube
from market_spine.kube.client import load_configuration
from market_spine.operator.reconciler import ReconcilerOptions
from tests.operator.emulator import EmulatorThread, crd_manifest, write_kubeconfig
from tests.operator.harness import Cluster, FakeClock, JobController, Namespace, OperatorProcess

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MANAGED_BY_TESTS = "spine.marketspine.io/test-job-controller"


@pytest.fixture(autouse=True)
def _quiet_kopf() -> None:
    logging.getLogger("kopf").setLevel(logging.WARNING)


def _apply_crd(cluster: Cluster) -> None:
    crd = crd_manifest()
    name = crd["metadata"]["name"]
    try:
        cluster.api.create(CRDS, crd)
    except kube.AlreadyExistsError:
        current = cluster.api.get(f"{CRDS}/{name}")
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.api.request("PUT", f"{CRDS}/{name}", body=crd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = (cluster.api.get(f"{CRDS}/{name}").get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.5)
    raise RuntimeError(f"CRD {name} was not established within 60s")


@pytest.fixture(scope="session")
def real_cluster() -> Cluster | None:
    """The cluster named by SPINE_TEST_KUBECONFIG (with the CRD applied), or None."""
    real = os.environ.get("SPINE_TEST_KUBECONFIG")
    if not real:
        return None
    path = Path(real)
    instance = Cluster(load_configuration(path), path)
    _apply_crd(instance)
    return instance


@pytest.fixture
def cluster(real_cluster: Cluster | None, tmp_path: Path) -> Iterator[Cluster]:
    """The real cluster, or a fresh emulator for this test (a few milliseconds to start; a fresh
    one keeps tests from slowing each other down through leftover watch streams)."""
    if real_cluster is not None:
        yield real_cluster
        return
    emulator = EmulatorThread().start()
    path = write_kubeconfig(tmp_path / "kubeconfig", emulator.url)
    try:
        yield Cluster(load_configuration(path), path, emulator=emulator)
    finally:
        emulator.stop()


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[Namespace]:
    name = cluster.create_namespace()
    yield Namespace(cluster, name)
    cluster.delete_namespace(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def operator_settings(ns: Namespace, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "namespace": ns.name,
        "database_url": database_url,
        "kubeconfig": ns.cluster.kubeconfig,
        "backend": "kubernetes",
        "pipeline_image": "registry.example/market-spine:test",
        "database_secret": "market-spine-db",
        "job_start_timeout_seconds": 600,
        "default_active_deadline_seconds": 3600,
        "max_running": 50,
        "max_running_per_pipeline": 50,
        "resync_interval_seconds": 3600,
        "db_connect_timeout": 2,
    }
    values.update(overrides)
    return Settings(**values)


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(ns: Namespace, database_url: str, clock: FakeClock) -> Iterator[StartOperator]:
    """``start_operator(**settings)`` starts the real operator on this test's namespace; every
    operator started is stopped at the end of the test."""
    started: list[OperatorProcess] = []

    def start(**overrides: Any) -> OperatorProcess:
        options = overrides.pop("options", None) or ReconcilerOptions(workers=4, tick=0.02)
        if ns.cluster.real:  # keep Kubernetes' Job controller off our Jobs: the tests play it
            options.job_managed_by = MANAGED_BY_TESTS
        pipeline_error = overrides.pop("pipeline_error", None)
        ports = {k: overrides.pop(k) for k in ("metrics_port", "health_port") if k in overrides}
        settings = operator_settings(ns, database_url, **overrides)
        process = OperatorProcess(
            settings, ns.cluster.configuration, clock, options=options, pipeline_error=pipeline_error, **ports
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        if process.alive:
            process.stop()


@pytest.fixture
def operator(start_operator: StartOperator) -> OperatorProcess:
    return start_operator()


@pytest.fixture
def jobs(ns: Namespace, database_url: str, clock: FakeClock) -> JobController:
    return JobController(ns, database_url=database_url, clock=clock)
