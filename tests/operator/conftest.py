"""Fixtures of the operator suite: a Kubernetes API, a namespace per test, the real operator.

The API is the session's real kube-apiserver whenever there is one (``tests/support/k8s.py``:
``KUBEBUILDER_ASSETS`` or ``SPINE_TEST_KUBECONFIG``), with the real Job controller and a process
kubelet; the tests then play only the kubelet (``harness.JobController``) and every Job status is
the Job controller's own. Without one, the KMock-based emulator (``tests/operator/emulator.py``)
stands in, one per test, and the tests play the Job controller too. ``SPINE_TEST_KUBE=emulator``
forces the emulator (for a quick run; it proves nothing Kubernetes must accept). Both use a real
PostgreSQL (the ``database_url`` fixture: a fresh migrated database per test).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from market_spine.config import Settings
from market_spine.kube.client import load_configuration
from market_spine.operator.reconciler import ReconcilerOptions
from tests.operator.emulator import EmulatorThread, write_kubeconfig
from tests.operator.harness import Cluster, FakeClock, JobController, Namespace, OperatorProcess
from tests.support import k8s


@pytest.fixture(autouse=True)
def _quiet_kopf() -> None:
    logging.getLogger("kopf").setLevel(logging.WARNING)


def use_real_api() -> bool:
    return k8s.available() and os.environ.get("SPINE_TEST_KUBE") != "emulator"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """The real API server, or a fresh emulator for this test (a few milliseconds to start; a fresh
    one keeps tests from slowing each other down through leftover watch streams)."""
    if use_real_api():
        real: k8s.RealCluster = request.getfixturevalue("real_api")
        yield Cluster(real.configuration, real.kubeconfig, server=real)
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
