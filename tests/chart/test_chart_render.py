"""The chart lints and renders with the real Helm binary, and every manifest is valid Kubernetes.

Built-in kinds are validated offline against the official OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail) for the oldest and the newest Kubernetes the chart claims. The custom
kinds (CRDs' instances: ServiceMonitor, PrometheusRule, KopfPeering) are checked by their own
structure in test_chart_monitoring.py and below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from .chartlib import ALL_FEATURES, CHART, VALUE_SETS, HelmResult, Rendered

# Kinds with no schema in kubernetes-validate (custom resources): checked by their own tests.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "KopfPeering"}
OLDEST = "1.29.0"


def _claimed_min_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart["kubeVersion"]


def newest_version() -> str:
    """The newest Kubernetes whose schemas kubernetes-validate ships (e.g. "1.37.0")."""
    return str(latest_version())


def test_chart_claims_the_oldest_tested_version() -> None:
    assert _claimed_min_version() == ">=1.29.0-0"


def test_validator_covers_recent_kubernetes() -> None:
    major, minor = (int(x) for x in newest_version().split(".")[:2])
    assert (major, minor) >= (1, 33), "kubernetes-validate is too old to check current Kubernetes"


@pytest.mark.parametrize("values_set", sorted(VALUE_SETS))
def test_helm_lint_strict(helm: Callable[..., HelmResult], values_set: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in VALUE_SETS[values_set]:
        args += ["--values", str(f)]
    out = helm(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_default_render_kinds(default: Rendered) -> None:
    kinds = Counter(d["kind"] for d in default.docs)
    assert kinds == Counter(
        {
            "ServiceAccount": 3,  # operator, cronjob, pipeline
            "CustomResourceDefinition": 1,
            "ClusterRole": 1,
            "ClusterRoleBinding": 1,
            "Role": 2,  # operator, cronjob
            "RoleBinding": 2,
            "Service": 1,
            "Deployment": 1,
            "CronJob": 4,  # three tiers + doctor
            "Job": 1,  # migration hook
        }
    )


def test_all_features_render_kinds(all_features: Rendered) -> None:
    kinds = Counter(d["kind"] for d in all_features.docs)
    assert kinds == Counter(
        {
            "ServiceAccount": 3,
            "CustomResourceDefinition": 2,  # SpineWorkItem + Kopf's KopfPeering
            "ClusterRole": 1,
            "ClusterRoleBinding": 1,
            "Role": 2,
            "RoleBinding": 2,
            "Service": 1,
            "Deployment": 1,
            "CronJob": 4,
            "Job": 1,
            "Secret": 1,  # database.url set
            "ServiceMonitor": 1,
            "PrometheusRule": 1,
            "ConfigMap": 1,  # Grafana dashboard
            "NetworkPolicy": 1,
            "PodDisruptionBudget": 1,
            "KopfPeering": 1,
        }
    )


@pytest.mark.parametrize("version", [OLDEST, newest_version()])
def test_every_manifest_is_valid_kubernetes(rendered: Rendered, version: str) -> None:
    validated: list[str] = []
    for doc in rendered.docs:
        ident = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{ident} is invalid for Kubernetes {version}: {exc.path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{ident}: no Kubernetes {version} schema for {doc['apiVersion']} (removed API?)")
        validated.append(ident)
    custom = [d["kind"] for d in rendered.docs if d["kind"] in CUSTOM_KINDS]
    assert len(validated) + len(custom) == len(rendered.docs)
    assert any(v.startswith("Deployment/") for v in validated)


def test_validation_catches_a_bad_manifest(default: Rendered) -> None:
    """The validator is strict: a misspelt field in a rendered Deployment is reported."""
    deployment = yaml.safe_load(yaml.safe_dump(default.one("Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST, strict=True)


def test_kube_version_constraint(template: Callable[..., HelmResult]) -> None:
    too_old = template(extra=["--kube-version", "1.28.9"])
    assert too_old.returncode != 0
    assert "chart requires kubeVersion: >=1.29.0-0" in too_old.stderr
    for ok in ("1.29.0", "v1.30.2-eks-1234", newest_version()):
        assert template(extra=["--kube-version", ok]).returncode == 0, ok


def test_all_features_file_is_complete(all_features: Rendered) -> None:
    """The all-features file really switches every optional part on."""
    values = yaml.safe_load(ALL_FEATURES.read_text())
    assert values["ha"]["enabled"] and values["operator"]["replicas"] >= 2
    assert values["prometheus"]["serviceMonitor"]["enabled"] and values["prometheus"]["rules"]["enabled"]
    assert values["grafana"]["dashboard"]["enabled"] and values["networkPolicy"]["enabled"]
    assert values["rbac"]["create"] and values["database"]["url"]


def test_names_fit_kubernetes_limits(render: Callable[..., Rendered]) -> None:
    """With the longest release name Helm allows (53), CronJob names leave room for Job suffixes."""
    long = render([ALL_FEATURES], release="r" * 53)
    for doc in long.docs:
        name = doc["metadata"]["name"]
        limit = 52 if doc["kind"] == "CronJob" else 63 if doc["kind"] in {"Service", "Job"} else 253
        assert len(name) <= limit, f"{doc['kind']} {name} is {len(name)} > {limit} characters"
    cronjobs = {d["metadata"]["name"] for d in long.of_kind("CronJob")}
    assert len(cronjobs) == 4, "truncation must keep CronJob names distinct"


def _crd_source_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((CHART / "files" / "crds").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_crd_rendered_from_the_chart_copy(default: Rendered) -> None:
    """templates/crds.yaml renders files/crds/ unchanged except for labels and the keep policy."""
    sources = _crd_source_docs()
    assert sources, "helm/market-spine/files/crds/ holds no CRD"
    rendered = {d["metadata"]["name"]: d for d in default.of_kind("CustomResourceDefinition")}
    for src in sources:
        out = rendered[src["metadata"]["name"]]
        assert out["spec"] == src["spec"]
        assert out["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert out["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        for key, value in (src["metadata"].get("labels") or {}).items():
            assert out["metadata"]["labels"][key] == value


def test_spineworkitem_crd_identity(default: Rendered) -> None:
    crd = default.one("CustomResourceDefinition", "spineworkitems.spine.marketspine.io")
    assert crd["spec"]["group"] == "spine.marketspine.io"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"]) == ("SpineWorkItem", "spineworkitems")
    assert "swi" in names["shortNames"]


def test_crds_keep_and_enabled_switches(render: Callable[..., Rendered]) -> None:
    no_keep = render(sets=["crds.keep=false"])
    crd = no_keep.one("CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})
    assert render(sets=["crds.enabled=false"]).of_kind("CustomResourceDefinition") == []
    ha_no_crds = render([ALL_FEATURES], sets=["crds.enabled=false"])
    assert ha_no_crds.of_kind("CustomResourceDefinition") == []
    ha_shared_peering = render([ALL_FEATURES], sets=["ha.installPeeringCRD=false"])
    assert [c["metadata"]["name"] for c in ha_shared_peering.of_kind("CustomResourceDefinition")] == [
        "spineworkitems.spine.marketspine.io"
    ]


def test_kopf_peering_object(all_features: Rendered) -> None:
    peering = all_features.one("KopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == "market-spine-prod"
    assert peering["metadata"]["namespace"] == "market-data"
    # A hook: its CRD may be created by the same release, which Helm cannot map beforehand.
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    crd = all_features.one("CustomResourceDefinition", "kopfpeerings.kopf.dev")
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["plural"] == "kopfpeerings"


def test_notes_tell_how_to_watch_work_items(helm: Callable[..., HelmResult]) -> None:
    out = helm("install", "ms", str(CHART), "--namespace", "market-data", "--dry-run=client")
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n market-data get swi --watch" in notes
    assert "create job --from=cronjob/ms-market-spine-enqueue-otc" in notes
    assert "kubectl -n market-data create secret generic market-spine-db" in notes
