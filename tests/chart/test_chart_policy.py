"""Policy tests on the rendered chart: least-privilege RBAC, hardened pods, secrets, settings.

Each runs on the default values and on the all-features values (the ``rendered`` fixture).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from market_spine.config import Settings

from .chartlib import NAMESPACE, Rendered, containers, env_of, pod_specs

RuleKey = tuple[str, str]  # (apiGroup, resource)


def _rules(role: dict[str, Any]) -> dict[RuleKey, set[str]]:
    """Flatten a Role's rules to {(group, resource): verbs}, refusing duplicate grants."""
    out: dict[RuleKey, set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                assert key not in out, f"{key} granted twice in {role['metadata']['name']}"
                out[key] = set(rule["verbs"])
    return out


def _workloads(rendered: Rendered) -> list[dict[str, Any]]:
    return [d for d in rendered.docs if pod_specs(d)]


# --- RBAC ------------------------------------------------------------------------------------------


def test_rbac_has_no_wildcards(rendered: Rendered) -> None:
    roles = rendered.of_kind("Role") + rendered.of_kind("ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                values = rule.get(field, [])
                assert not any("*" in v for v in values), f"{role['metadata']['name']}: wildcard in {field}"


# Exactly what the operator uses (tests/helm/test_helm_end_to_end.py checks it against the audit
# log of a real API server): anything more is a grant nobody needs.
OPERATOR_ROLE = {
    ("spine.marketspine.io", "spineworkitems"): {"get", "list", "watch", "create", "patch"},
    ("spine.marketspine.io", "spineworkitems/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"list"},
    ("", "events"): {"create"},
}
OPERATOR_CLUSTER_ROLE = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}
CRONJOB_ROLE = {("spine.marketspine.io", "spineworkitems"): {"get", "create"}}


def test_operator_rbac_exact_default(default: Rendered) -> None:
    assert _rules(default.one("Role", "ms-market-spine-operator")) == OPERATOR_ROLE
    assert _rules(default.one("ClusterRole")) == OPERATOR_CLUSTER_ROLE


def test_operator_rbac_exact_all_features(all_features: Rendered) -> None:
    """Kopf peering objects with ha.enabled; nothing else."""
    expected = {**OPERATOR_ROLE, ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
    assert _rules(all_features.one("Role", "ms-market-spine-operator")) == expected
    assert _rules(all_features.one("ClusterRole")) == OPERATOR_CLUSTER_ROLE


def test_cronjob_role_is_narrow(rendered: Rendered) -> None:
    assert _rules(rendered.one("Role", "ms-market-spine-cronjob")) == CRONJOB_ROLE


def test_bindings_tie_roles_to_the_right_accounts(rendered: Rendered) -> None:
    bindings = {
        b["metadata"]["name"]: b for b in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding")
    }
    subjects = {name: [(s["kind"], s["name"], s["namespace"]) for s in b["subjects"]] for name, b in bindings.items()}
    roles = {name: (b["roleRef"]["kind"], b["roleRef"]["name"]) for name, b in bindings.items()}
    assert subjects["ms-market-spine-operator"] == [("ServiceAccount", "ms-market-spine", NAMESPACE)]
    assert roles["ms-market-spine-operator"] == ("Role", "ms-market-spine-operator")
    assert subjects["ms-market-spine-cronjob"] == [("ServiceAccount", "ms-market-spine-cronjob", NAMESPACE)]
    assert roles["ms-market-spine-cronjob"] == ("Role", "ms-market-spine-cronjob")
    cluster = rendered.one("ClusterRoleBinding")
    assert cluster["roleRef"]["name"] == rendered.one("ClusterRole")["metadata"]["name"]
    assert [s["name"] for s in cluster["subjects"]] == ["ms-market-spine"]
    # The pipeline account gets no role at all.
    bound = {s[1] for subs in subjects.values() for s in subs}
    assert "ms-market-spine-pipeline" not in bound


def test_pods_use_their_own_accounts(rendered: Rendered) -> None:
    deployment = pod_specs(rendered.one("Deployment"))[0]
    assert deployment["serviceAccountName"] == "ms-market-spine"
    for cron in rendered.of_kind("CronJob"):
        pod = pod_specs(cron)[0]
        assert pod["serviceAccountName"] == "ms-market-spine-cronjob", cron["metadata"]["name"]
        # Only the enqueue CronJobs call the API; the doctor reads PostgreSQL alone.
        doctor = cron["metadata"]["name"].endswith("-doctor")
        assert pod["automountServiceAccountToken"] is not doctor, cron["metadata"]["name"]
    migrate = pod_specs(rendered.one("Job"))[0]
    assert migrate["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in migrate
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False, "tokens are mounted only by pods that need them"


# --- pod hardening ---------------------------------------------------------------------------------


def test_every_container_is_hardened(rendered: Rendered) -> None:
    workloads = _workloads(rendered)
    assert {w["kind"] for w in workloads} == {"Deployment", "CronJob", "Job"}
    for workload in workloads:
        for pod in pod_specs(workload):
            pod_sc = pod.get("securityContext", {})
            assert pod_sc.get("runAsNonRoot") is True
            assert pod_sc.get("runAsUser", 0) != 0
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            mounts_tmp = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
            for c in containers(pod):
                where = f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}"
                sc = c.get("securityContext", {})
                assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
                assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0), where
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("privileged", False) is False, where
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
                assert not sc.get("capabilities", {}).get("add"), where
                assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
                tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                assert tmp and tmp[0]["name"] in mounts_tmp, f"{where}: no writable emptyDir at /tmp"
                assert "resources" in c and c["resources"].get("requests"), f"{where}: no resource requests"
                assert "command" not in c, f"{where}: must keep the image's `spine` entrypoint"


def test_operator_deployment(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    pod = pod_specs(deployment)[0]
    (c,) = pod["containers"]
    assert c["args"] == ["operator", "run"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9102}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"]["limits"]["memory"]


def test_standalone_operator_never_overlaps(default: Rendered) -> None:
    deployment = default.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "SPINE_PEERING" not in env_of(pod_specs(deployment)[0]["containers"][0])


def test_ha_mode(all_features: Rendered) -> None:
    deployment = all_features.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = env_of(pod_specs(deployment)[0]["containers"][0])
    assert env["SPINE_PEERING"]["value"] == "market-spine-prod"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = all_features.one("PodDisruptionBudget")
    assert (
        pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["operator.replicas=2"], "operator.replicas > 1 needs ha.enabled=true"),
        (["ha.enabled=true"], "ha.enabled=true needs operator.replicas >= 2"),
        (["database.existingSecret="], "set database.existingSecret"),
    ],
)
def test_unsafe_combinations_are_refused(template: Callable[..., Any], sets: list[str], message: str) -> None:
    out = template(sets=sets)
    assert out.returncode != 0
    assert message in out.stderr


# --- database secret -------------------------------------------------------------------------------


def _db_envs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    found = {}
    for workload in _workloads(rendered):
        for pod in pod_specs(workload):
            for c in containers(pod):
                env = env_of(c)
                if "SPINE_DATABASE_URL" in env:
                    found[f"{workload['kind']}/{workload['metadata']['name']}"] = env
    return found


def test_database_url_from_existing_secret(default: Rendered) -> None:
    envs = _db_envs(default)
    assert set(envs) == {"Deployment/ms-market-spine", "Job/ms-market-spine-migrate", "CronJob/ms-market-spine-doctor"}
    for env in envs.values():
        ref = env["SPINE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "market-spine-db", "key": "url"}
        assert "value" not in env["SPINE_DATABASE_URL"]
    operator_env = envs["Deployment/ms-market-spine"]
    assert operator_env["SPINE_DATABASE_SECRET"]["value"] == "market-spine-db"
    assert operator_env["SPINE_DATABASE_SECRET_KEY"]["value"] == "url"
    assert default.of_kind("Secret") == []


def test_database_url_in_chart_secret_only(all_features: Rendered) -> None:
    url = "postgresql://spine:s3cret@postgres.databases.svc:5432/spine"
    secret = all_features.one("Secret")
    assert secret["metadata"]["name"] == "ms-market-spine-database"
    assert base64.b64decode(secret["data"]["url"]).decode() == url
    # Created before the migration hook that reads it.
    hooks = secret["metadata"]["annotations"]
    job = all_features.one("Job")["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(hooks["helm.sh/hook-weight"]) < int(job["helm.sh/hook-weight"])
    # The URL (and its password) appear nowhere in clear text: not in a ConfigMap, env or annotation.
    assert url not in all_features.text
    assert "s3cret" not in all_features.text
    for cm in all_features.of_kind("ConfigMap"):
        assert "postgresql://" not in str(cm.get("data"))
    for env in _db_envs(all_features).values():
        assert env["SPINE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "ms-market-spine-database",
            "key": "url",
        }
    operator_env = _db_envs(all_features)["Deployment/ms-market-spine"]
    assert operator_env["SPINE_DATABASE_SECRET"]["value"] == "ms-market-spine-database"


def test_enqueue_cronjobs_get_no_database(rendered: Rendered) -> None:
    for cron in rendered.of_kind("CronJob"):
        if "-enqueue-" in cron["metadata"]["name"]:
            env = env_of(pod_specs(cron)[0]["containers"][0])
            assert "SPINE_DATABASE_URL" not in env, "enqueueing only creates SpineWorkItems"


def test_existing_secret_with_custom_key(render: Callable[..., Rendered]) -> None:
    out = render(sets=["database.existingSecret=pg-app", "database.existingSecretKey=uri"])
    env = env_of(pod_specs(out.one("Deployment"))[0]["containers"][0])
    assert env["SPINE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg-app", "key": "uri"}
    assert env["SPINE_DATABASE_SECRET"]["value"] == "pg-app"
    assert env["SPINE_DATABASE_SECRET_KEY"]["value"] == "uri"


# --- migrations ------------------------------------------------------------------------------------


def test_migration_hook(rendered: Rendered) -> None:
    job = rendered.one("Job")
    assert job["metadata"]["name"] == "ms-market-spine-migrate"
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = pod_specs(job)[0]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["args"] == ["db", "upgrade"]


def test_migrations_can_be_turned_off(render: Callable[..., Rendered]) -> None:
    assert render(sets=["database.migrations.enabled=false"]).of_kind("Job") == []


# --- settings the operator reads --------------------------------------------------------------------


def test_every_spine_env_var_is_a_setting(rendered: Rendered) -> None:
    """Each SPINE_* variable the chart sets names a field of market_spine.config.Settings."""
    fields = {f"SPINE_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for workload in _workloads(rendered):
        for pod in pod_specs(workload):
            for c in containers(pod):
                for name in env_of(c):
                    if name.startswith("SPINE_"):
                        assert name in fields, f"{workload['metadata']['name']}: {name} is not a Settings field"
                        seen.add(name)
    assert {"SPINE_DATABASE_URL", "SPINE_NAMESPACE", "SPINE_PIPELINE_IMAGE", "SPINE_BACKEND"} <= seen


def test_operator_environment(rendered: Rendered) -> None:
    env = env_of(pod_specs(rendered.one("Deployment"))[0]["containers"][0])
    assert env["SPINE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SPINE_BACKEND"]["value"] == "kubernetes"
    assert env["SPINE_HEALTH_PORT"]["value"] == "8080"
    assert env["SPINE_METRICS_PORT"]["value"] == "9102"
    assert env["SPINE_JOB_SERVICE_ACCOUNT"]["value"] == "ms-market-spine-pipeline"
    image = pod_specs(rendered.one("Deployment"))[0]["containers"][0]["image"]
    assert env["SPINE_PIPELINE_IMAGE"]["value"] in {image, "registry.example.com/platform/market-spine-pipelines:0.1.0"}


def test_chart_defaults_match_settings_defaults(default: Rendered) -> None:
    """The chart's ports and limits are the operator's own defaults, so docs and code agree."""
    env = env_of(pod_specs(default.one("Deployment"))[0]["containers"][0])
    defaults = {name: f.default for name, f in Settings.model_fields.items()}
    for name, value in {
        "SPINE_METRICS_PORT": defaults["metrics_port"],
        "SPINE_HEALTH_PORT": defaults["health_port"],
        "SPINE_MAX_RUNNING": defaults["max_running"],
        "SPINE_MAX_RUNNING_PER_PIPELINE": defaults["max_running_per_pipeline"],
        "SPINE_JOB_TTL_SECONDS": defaults["job_ttl_seconds"],
        "SPINE_JOB_START_TIMEOUT_SECONDS": defaults["job_start_timeout_seconds"],
        "SPINE_DEFAULT_ACTIVE_DEADLINE_SECONDS": defaults["default_active_deadline_seconds"],
        "SPINE_DATABASE_SECRET": defaults["database_secret"],
        "SPINE_DATABASE_SECRET_KEY": defaults["database_secret_key"],
        "SPINE_PIPELINE_IMAGE": defaults["pipeline_image"],
    }.items():
        assert str(env[name]["value"]) == str(value), name
    assert float(env["SPINE_RESYNC_INTERVAL_SECONDS"]["value"]) == defaults["resync_interval_seconds"]


# --- CronJobs --------------------------------------------------------------------------------------


def test_one_enqueue_cronjob_per_tier(rendered: Rendered) -> None:
    crons = {c["metadata"]["name"]: c for c in rendered.of_kind("CronJob")}
    assert set(crons) == {
        "ms-market-spine-enqueue-nms-tier-1",
        "ms-market-spine-enqueue-nms-tier-2",
        "ms-market-spine-enqueue-otc",
        "ms-market-spine-doctor",
    }
    for tier in ("NMS_TIER_1", "NMS_TIER_2", "OTC"):
        cron = crons[f"ms-market-spine-enqueue-{tier.lower().replace('_', '-')}"]
        (c,) = pod_specs(cron)[0]["containers"]
        assert c["args"] == [
            "work",
            "enqueue",
            "finra.otc_transparency.ingest_week",
            "--week",
            "latest",
            "--tier",
            tier,
            "--source",
            "finra-api",
            "--chain",
        ]
        assert env_of(c)["SPINE_BACKEND"]["value"] == "kubernetes"
        assert env_of(c)["SPINE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_cronjob_scheduling_fields(rendered: Rendered) -> None:
    for cron in rendered.of_kind("CronJob"):
        spec = cron["spec"]
        name = cron["metadata"]["name"]
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["startingDeadlineSeconds"] > 0, name
        assert spec["successfulJobsHistoryLimit"] >= 1, name
        assert spec["failedJobsHistoryLimit"] >= 1, name
        assert len(spec["schedule"].split()) == 5, name
        assert spec["timeZone"], name
        job = spec["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] > 0, name
        assert pod_specs(cron)[0]["restartPolicy"] == "Never", name


def test_doctor_cronjob(rendered: Rendered, request: pytest.FixtureRequest) -> None:
    cron = rendered.one("CronJob", "ms-market-spine-doctor")
    (c,) = pod_specs(cron)[0]["containers"]
    weeks, fmt = ("26", "json") if "all-features" in request.node.callspec.id else ("12", "table")
    assert c["args"] == ["doctor", "finra.otc_transparency", "--weeks", weeks, "--format", fmt]
    # Exit code 1 (gaps) must fail the Job visibly, not be retried into success.
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0


def test_tiers_are_configurable(render: Callable[..., Rendered]) -> None:
    out = render(sets=["cronjobs.enqueue.tiers={OTC}", "cronjobs.enqueue.chain=false"])
    enqueue = [c for c in out.of_kind("CronJob") if "-enqueue-" in c["metadata"]["name"]]
    assert [c["metadata"]["name"] for c in enqueue] == ["ms-market-spine-enqueue-otc"]
    assert "--chain" not in pod_specs(enqueue[0])[0]["containers"][0]["args"]
    none = render(sets=["cronjobs.enqueue.enabled=false", "cronjobs.doctor.enabled=false"])
    assert none.of_kind("CronJob") == []
    assert [r["metadata"]["name"] for r in none.of_kind("Role")] == ["ms-market-spine-operator"]


def _calendar_envs(rendered: Rendered) -> dict[str, dict[str, dict[str, Any]]]:
    """The env of the operator, the doctor and each enqueue container, by workload name."""
    workloads = [rendered.one("Deployment"), *rendered.of_kind("CronJob")]
    return {w["metadata"]["name"]: env_of(pod_specs(w)[0]["containers"][0]) for w in workloads}


def test_calendar_settings_reach_operator_doctor_and_enqueue(
    all_features: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """calendar.publicationGraceDays becomes SPINE_PUBLICATION_GRACE_DAYS, read by Settings exactly
    as the values file says, in the operator and in every CronJob; the retired settings are never set."""
    envs = _calendar_envs(all_features)
    assert set(envs) == {
        "ms-market-spine",
        "ms-market-spine-doctor",
        "ms-market-spine-enqueue-nms-tier-1",
        "ms-market-spine-enqueue-nms-tier-2",
        "ms-market-spine-enqueue-otc",
    }
    for name, env in envs.items():
        assert env["SPINE_PUBLICATION_GRACE_DAYS"]["value"] == "3", name
        assert not {"SPINE_WEEK_ENDING_WEEKDAY", "SPINE_PUBLICATION_LAG_DAYS"} & set(env), name
        monkeypatch.setenv("SPINE_PUBLICATION_GRACE_DAYS", env["SPINE_PUBLICATION_GRACE_DAYS"]["value"])
        assert Settings().publication_grace_days == 3, name


def test_calendar_defaults(default: Rendered) -> None:
    """By default the grace is the Settings default (one day)."""
    envs = _calendar_envs(default)
    assert len(envs) == 5
    for name, env in envs.items():
        expected = str(Settings.model_fields["publication_grace_days"].default)
        assert env["SPINE_PUBLICATION_GRACE_DAYS"]["value"] == expected == "1", name


# --- images ----------------------------------------------------------------------------------------


def test_image_reference(default: Rendered, all_features: Rendered) -> None:
    default_images = {c["image"] for w in _workloads(default) for p in pod_specs(w) for c in containers(p)}
    assert default_images == {"ghcr.io/market-spine/market-spine:0.1.0"}
    digest = "sha256:" + "0123456789abcdef" * 4
    images = {c["image"] for w in _workloads(all_features) for p in pod_specs(w) for c in containers(p)}
    assert images == {f"registry.example.com/platform/market-spine@{digest}"}
    for w in _workloads(all_features):
        pod = pod_specs(w)[0]
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
        assert pod["priorityClassName"] == "market-data-critical"


def test_common_labels_everywhere(all_features: Rendered) -> None:
    for doc in all_features.docs:
        assert doc["metadata"]["labels"]["team"] == "data-platform", doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_bring_your_own_accounts(render: Callable[..., Rendered], template: Callable[..., Any]) -> None:
    out = render(
        sets=[
            "serviceAccount.create=false",
            "serviceAccount.name=ops-operator",
            "cronjobs.serviceAccount.create=false",
            "cronjobs.serviceAccount.name=ops-cron",
            "pipelineJobs.serviceAccount.create=false",
        ]
    )
    assert out.of_kind("ServiceAccount") == []
    assert pod_specs(out.one("Deployment"))[0]["serviceAccountName"] == "ops-operator"
    assert "SPINE_JOB_SERVICE_ACCOUNT" not in env_of(pod_specs(out.one("Deployment"))[0]["containers"][0])
    binding = out.one("RoleBinding", "ms-market-spine-cronjob")
    assert binding["subjects"][0]["name"] == "ops-cron"
    missing = template(sets=["serviceAccount.create=false"])
    assert missing.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in missing.stderr


def test_rbac_can_be_managed_elsewhere(render: Callable[..., Rendered]) -> None:
    out = render(sets=["rbac.create=false"])
    kinds = {d["kind"] for d in out.docs}
    assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert "Deployment" in kinds
