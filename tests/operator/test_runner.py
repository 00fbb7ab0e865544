"""``spine operator run``'s wiring: Kopf settings, credentials, and the health and metrics endpoints."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from pathlib import Path

from kubernetes.client import Configuration

from market_spine.config import Settings
from market_spine.kube.client import load_configuration
from market_spine.operator.runner import connection_info, kopf_settings
from tests.operator.conftest import StartOperator
from tests.operator.emulator import write_kubeconfig
from tests.operator.harness import Namespace, wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_kopf_settings_are_made_for_a_long_running_operator() -> None:
    cfg = kopf_settings(Settings(), priority=7)
    assert (cfg.watching.server_timeout, cfg.watching.client_timeout) == (300, 330)
    assert cfg.watching.inactivity_timeout == 70  # stalled watches are re-opened
    assert cfg.posting.level == logging.WARNING
    assert cfg.peering.priority == 7
    assert cfg.persistence.finalizer == "spine.marketspine.io/finalizer"
    assert list(cfg.watching.label_selectors.values()) == ["app.kubernetes.io/managed-by=market-spine-operator"]


def test_kopf_logs_in_with_the_clients_credentials(tmp_path: Path) -> None:
    configuration = load_configuration(write_kubeconfig(tmp_path / "kubeconfig", "https://api.example:6443"))
    info = connection_info(configuration)
    assert info.server == "https://api.example:6443"
    assert info.token == "emulator-token"
    assert isinstance(configuration, Configuration)


def test_health_and_metrics_endpoints(ns: Namespace, start_operator: StartOperator) -> None:
    metrics, health = _free_port(), _free_port()
    start_operator(metrics_port=metrics, health_port=health)

    def fetch(url: str) -> tuple[int, str]:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()

    status, body = wait_for(lambda: _try(fetch, f"http://127.0.0.1:{health}/healthz"), what="/healthz")
    assert status == 200
    probes = json.loads(body)
    assert probes["database"]["up"] is True and probes["queue"]["queued"] == 0
    status, text = fetch(f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200
    for name in (
        "market_spine_attempts_total",
        "market_spine_reconcile_errors_total",
        "market_spine_db_up",
        "market_spine_job_duration_seconds",
        "market_spine_partition_gaps",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def _try(fetch, url):  # type: ignore[no-untyped-def]
    try:
        return fetch(url)
    except OSError:
        return None
