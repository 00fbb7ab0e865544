"""The batch/v1 Job of one attempt: its manifest, and what its status and pods say about it.

Called by the operator: :func:`build_job` when an attempt starts (the name is deterministic, so a
restarted operator that creates it again gets ``409 AlreadyExists`` and adopts it), and
:func:`job_view` / :func:`observe` when a Job's watch event arrives. The Job runs the pipeline
image's own CLI, ``spine run <pipeline> --week … --tier … --execution-id …``, with the
database URL from a Secret, so the container records its execution like any other run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from market_spine.config import Settings
from market_spine.core.reconcile import JobObservation
from market_spine.core.resource import (
    API_VERSION,
    KIND,
    LABEL_ATTEMPT,
    LABEL_MANAGED_BY,
    LABEL_PIPELINE,
    LABEL_WORK_ITEM,
    MANAGED_BY,
    PARAM_FLAGS,
    WorkItemResourceSpec,
)
from market_spine.errors import PERMANENT_EXIT_CODES

CONTAINER = "pipeline"
ANNOTATION_EXECUTION_ID = "spine.marketspine.io/execution-id"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # set on pods by the Job controller
UID = 10001  # the image's `spine` user (see Dockerfile)


def spine_run_command(spec: WorkItemResourceSpec, execution_id: str) -> list[str]:
    """The container command of an attempt: exactly what a user would type to run it by hand."""
    command = [
        "spine",
        "run",
        spec.pipeline,
        "--week",
        spec.partition.week.isoformat(),
        "--tier",
        spec.partition.tier.value,
        "--execution-id",
        execution_id,
    ]
    for key in sorted(spec.params):
        command += [PARAM_FLAGS[key], spec.params[key]]
    return command


def job_labels(work_item: str, pipeline: str, attempt: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "market-spine",
        "app.kubernetes.io/component": "pipeline",
        "app.kubernetes.io/part-of": "market-spine",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_WORK_ITEM: work_item,
        LABEL_ATTEMPT: str(attempt),
        LABEL_PIPELINE: pipeline,
    }


def _env(settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            "name": "SPINE_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": settings.database_secret, "key": settings.database_secret_key}},
        },
        {"name": "SPINE_DB_CONNECT_TIMEOUT", "value": str(settings.db_connect_timeout)},
        {"name": "SPINE_FINRA_API_URL", "value": settings.finra_api_url},
        {"name": "SPINE_FINRA_API_RATE_PER_SECOND", "value": str(settings.finra_api_rate_per_second)},
        {"name": "SPINE_FINRA_API_RETRIES", "value": str(settings.finra_api_retries)},
        {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only; /tmp is an emptyDir
        {"name": "TMPDIR", "value": "/tmp"},
    ]


def build_job(
    *,
    work_item: str,
    namespace: str,
    uid: str,
    spec: WorkItemResourceSpec,
    attempt: int,
    name: str,
    execution_id: str,
    settings: Settings,
) -> dict[str, Any]:
    """The Job manifest of attempt ``attempt`` of a work item (owned by it, one pod, no retries)."""
    labels = job_labels(work_item, spec.pipeline, attempt)
    deadline = spec.active_deadline_seconds or settings.default_active_deadline_seconds
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.pipeline_image,
        "imagePullPolicy": "IfNotPresent",
        "command": spine_run_command(spec, execution_id),
        "env": _env(settings),
        # On failure the last lines of the log become the termination message, which the
        # operator copies into status.lastError: the reason is visible in `kubectl get swi`.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(exclude_defaults=True)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # pipelines never call the Kubernetes API
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if settings.job_service_account:
        pod_spec["serviceAccountName"] = settings.job_service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_EXECUTION_ID: execution_id},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": work_item,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            # The operator owns retries (with backoff and a budget): the Job runs exactly one pod,
            # and a failed pod is not replaced until it has fully terminated.
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podReplacementPolicy": "Failed",
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


@dataclass(frozen=True, slots=True)
class JobView:
    """The little the operator keeps in memory about one of its Jobs (from the watch)."""

    name: str
    namespace: str
    work_item: str
    attempt: int | None
    owner_uid: str | None
    started: bool
    succeeded: bool
    failed: bool
    reason: str | None
    message: str | None


def _true(conditions: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None)


def job_view(body: Mapping[str, Any]) -> JobView:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    failed = _true(conditions, "Failed")
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == KIND), None)
    attempt = labels.get(LABEL_ATTEMPT)
    counts = (status.get("ready") or 0, status.get("succeeded") or 0, status.get("failed") or 0)
    return JobView(
        name=str(meta.get("name")),
        namespace=str(meta.get("namespace")),
        work_item=str(labels.get(LABEL_WORK_ITEM, "")),
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        owner_uid=owner.get("uid") if owner else None,
        started=any(counts),
        succeeded=_true(conditions, "Complete") is not None,
        failed=failed is not None,
        reason=failed.get("reason") if failed else None,
        message=failed.get("message") if failed else None,
    )


@dataclass(frozen=True)
class PodOutcome:
    exit_code: int | None
    message: str | None
    started: bool


def pod_outcome(pods: Iterable[Mapping[str, Any]], job: str) -> PodOutcome:
    """What the Job's pod(s) reported: the pipeline container's exit code and termination message."""
    mine = [
        p for p in pods if any(((p.get("metadata") or {}).get("labels") or {}).get(k) == job for k in JOB_NAME_LABELS)
    ]
    mine.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    started = False
    for pod in reversed(mine):
        status = pod.get("status") or {}
        started = started or status.get("phase") in ("Running", "Succeeded", "Failed")
        for container in status.get("containerStatuses") or []:
            if container.get("name") != CONTAINER:
                continue
            for key in ("state", "lastState"):
                terminated = (container.get(key) or {}).get("terminated")
                if terminated:
                    message = terminated.get("message") or terminated.get("reason")
                    return PodOutcome(terminated.get("exitCode"), message, True)
            started = started or bool((container.get("state") or {}).get("running"))
    return PodOutcome(None, None, started)


def reported_capture(message: str | None) -> str | None:
    """The capture id a successful `spine run` reported in its termination message, if it did
    (a JSON object with ``capture_id``); ``None`` otherwise."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    value = data.get("capture_id") if isinstance(data, dict) else None
    return str(value) if value else None


def observe(
    view: JobView | None, name: str, pod: PodOutcome | None = None, capture_id: str | None = None
) -> JobObservation:
    """A :class:`JobObservation` for the planner; ``view=None`` means the API server said 404."""
    if view is None:
        return JobObservation(name=name, exists=False)
    return JobObservation(
        name=name,
        exists=True,
        started=view.started or bool(pod and pod.started),
        succeeded=view.succeeded,
        failed=view.failed,
        reason=view.reason,
        message=view.message,
        exit_code=pod.exit_code if pod else None,
        termination_message=pod.message if pod and not view.succeeded else None,
        capture_id=capture_id,
        retryable=not (pod and pod.exit_code in PERMANENT_EXIT_CODES),
    )
