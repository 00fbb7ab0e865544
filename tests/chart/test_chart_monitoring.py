"""Monitoring objects: the metrics port chain, ServiceMonitor, PrometheusRule, dashboard, NetworkPolicy.

ServiceMonitor and PrometheusRule are custom resources (no schema in kubernetes-validate), so their
structure is checked here field by field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .chartlib import ALL_FEATURES, NAMESPACE, Rendered, pod_specs


def _operator_container(rendered: Rendered) -> dict[str, Any]:
    return pod_specs(rendered.one("Deployment"))[0]["containers"][0]


def _metrics_chain(rendered: Rendered) -> tuple[int, int, int | str, int]:
    """(container port, Service port, Service targetPort resolved, pod annotation port)."""
    deployment = rendered.one("Deployment")
    container = _operator_container(rendered)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = rendered.one("Service")
    (svc_port,) = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    target = svc_port["targetPort"]
    resolved = named[target] if isinstance(target, str) else target
    # The Service selects the operator pods.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    annotation = int(deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
    return named["metrics"], svc_port["port"], resolved, annotation


def test_metrics_port_identical_everywhere(all_features: Rendered) -> None:
    container_port, service_port, target, annotation = _metrics_chain(all_features)
    assert container_port == service_port == target == annotation == 9102
    monitor = all_features.one("ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    service = all_features.one("Service")
    # The ServiceMonitor names the Service port, whose number is the container's metrics port.
    (svc_port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert svc_port["port"] == container_port
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    env = {e["name"]: e.get("value") for e in _operator_container(all_features)["env"]}
    assert env["SPINE_METRICS_PORT"] == str(container_port)


def test_metrics_port_moves_together(render: Callable[..., Rendered]) -> None:
    moved = render([ALL_FEATURES], sets=["metrics.port=9300", "health.port=8088"])
    container_port, service_port, target, annotation = _metrics_chain(moved)
    assert container_port == service_port == target == annotation == 9300
    env = {e["name"]: e.get("value") for e in _operator_container(moved)["env"]}
    assert env["SPINE_METRICS_PORT"] == "9300"
    assert env["SPINE_HEALTH_PORT"] == "8088"
    ports = {p["name"]: p["containerPort"] for p in _operator_container(moved)["ports"]}
    assert ports["health"] == 8088


def test_service_monitor_structure(all_features: Rendered) -> None:
    monitor = all_features.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout", "honorLabels"}
    assert endpoint["interval"] == "30s" and endpoint["scrapeTimeout"] == "10s"


def _alerts(rendered: Rendered) -> dict[str, dict[str, Any]]:
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_prometheus_rules(all_features: Rendered) -> None:
    alerts = _alerts(all_features)
    assert set(alerts) == {"MarketSpinePartitionGaps", "MarketSpineFailedWork"}
    gaps = alerts["MarketSpinePartitionGaps"]
    assert gaps["expr"] == "max by (domain) (market_spine_partition_gaps) > 0"
    assert gaps["for"] == "6h"
    assert gaps["labels"] == {"severity": "warning", "team": "data-platform"}
    failed = alerts["MarketSpineFailedWork"]
    assert failed["expr"] == "max by (domain) (market_spine_failed_work) >= 3"
    assert failed["for"] == "1h"
    assert failed["labels"] == {"severity": "critical", "team": "data-platform"}
    for name, alert in alerts.items():
        ann = alert["annotations"]
        assert {"summary", "description", "runbook", "runbook_url"} <= set(ann), name
        assert "{{ $labels.domain }}" in ann["summary"], "Prometheus templates must survive Helm rendering"
        assert ann["runbook_url"].endswith("docs/ops/alerts.md#" + name.lower())
        assert "kubectl -n market-data get swi" in ann["runbook"]
    assert "spine work retry" in failed["annotations"]["runbook"]
    assert "cronjob/ms-market-spine-doctor" in gaps["annotations"]["runbook"]


def test_alert_thresholds_are_values(render: Callable[..., Rendered]) -> None:
    out = render(
        [ALL_FEATURES],
        sets=["prometheus.rules.failedWorkThreshold=5", "prometheus.rules.partitionGapsFor=12h"],
    )
    alerts = _alerts(out)
    assert alerts["MarketSpineFailedWork"]["expr"].endswith(">= 5")
    assert alerts["MarketSpinePartitionGaps"]["for"] == "12h"


def test_runbook_anchors_exist_in_docs() -> None:
    """Each runbook_url anchor points at a heading of docs/ops/alerts.md."""
    from .chartlib import ROOT

    text = (ROOT / "docs" / "ops" / "alerts.md").read_text()
    headings = {line.lstrip("#").strip().lower() for line in text.splitlines() if line.startswith("## ")}
    assert {"marketspinepartitiongaps", "marketspinefailedwork"} <= headings


def test_grafana_dashboard(all_features: Rendered) -> None:
    cm = all_features.one("ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Market Spine"}
    dashboard = json.loads(cm["data"]["market-spine.json"])
    assert dashboard["uid"] == "market-spine"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("market_spine_partition_gaps", "market_spine_failed_work", "market_spine_work_items"):
        assert metric in exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_optional_monitoring_off_by_default(default: Rendered) -> None:
    kinds = {d["kind"] for d in default.docs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"}


def test_network_policy(all_features: Rendered) -> None:
    policy = all_features.one("NetworkPolicy")
    deployment = all_features.one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    named_ports = {p["name"] for p in _operator_container(all_features)["ports"]}
    assert {p["port"] for p in ingress["ports"]} == named_ports == {"metrics", "health"}
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 443, 5432} <= egress_ports


def test_pod_annotations_optional(render: Callable[..., Rendered]) -> None:
    out = render(sets=["prometheus.podAnnotations=false"])
    assert "annotations" not in out.one("Deployment")["spec"]["template"]["metadata"]
