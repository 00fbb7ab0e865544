"""The SpineWorkItem custom resource as pydantic models: the CRD's spec and status, in Python.

Called by the operator (to read what users applied and to write status), by
``kube.workitems`` (``spine work`` on the kubernetes backend, which builds manifests from a
:class:`~market_spine.core.workitem.WorkItemSpec`), and by the tests that prove these models and
``crds/spine.marketspine.io_spineworkitems.yaml`` describe the same fields, enums, defaults and
ranges. The spec reuses ``WorkItemSpec`` (shared with the local queue) and adds only what exists
on Kubernetes: the requests a user (or ``spine work``) makes by writing the spec, which the
operator carries out through ``core.lifecycle`` (``cancel``, ``retryRequest``, ``wakeRequest``,
``dismissRequest``), and ``image`` and ``resources``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from market_spine.core.states import WorkState
from market_spine.core.workitem import WorkItemSpec

GROUP = "spine.marketspine.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SpineWorkItem"
PLURAL = "spineworkitems"
SINGULAR = "spineworkitem"
SHORT_NAME = "swi"
CATEGORY = "spine"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels the operator puts on Jobs (and their pods) so it can find its own objects.
LABEL_WORK_ITEM = f"{GROUP}/work-item"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "market-spine-operator"
# Set on a chained (downstream) work item: the execution whose success created or re-ran it, so
# replaying the same upstream completion never re-runs the downstream item twice.
ANNOTATION_UPSTREAM_EXECUTION = f"{GROUP}/upstream-execution"

# Keys of ``spec.params`` and the ``spine run`` option each becomes in a Job's command line.
PARAM_FLAGS: dict[str, str] = {
    "file": "--file",
    "url": "--file",  # --file accepts a path or an http(s) URL
    "source": "--source",
    "capture_date": "--capture-date",
    "capture_id": "--capture-id",
}
MAX_PARAMS = 8
MAX_HISTORY = 20  # attempts kept in status.history (and re-synced to core_executions)
MAX_ERROR_CHARS = 2048  # a termination message is at most 4096 bytes; keep status small
MAX_REASON_CHARS = 256  # a dismissal's reason, as typed


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(enum.StrEnum):
    READY = "Ready"  # True once the item is COMPLETE
    RUNNING = "Running"  # True while an attempt's Job runs
    WAITING = "Waiting"  # True while the item waits: for desiredAt, a backoff, or a free slot
    FAILED = "Failed"  # True once the item is FAILED (needs a human)


class AttemptOutcome(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ResourceRequirements(BaseModel):
    """CPU/memory of a pipeline container: Kubernetes quantities such as ``500m`` or ``2Gi``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class WorkItemResourceSpec(WorkItemSpec):
    """``spec`` of a SpineWorkItem: the shared work-item spec plus the Kubernetes-only fields."""

    # Bounded like every string the API server stores (and CEL rules compare).
    pipeline: str = Field(min_length=1, max_length=253)
    cancel: bool = False
    retry_request: int = Field(0, alias="retryRequest", ge=0)
    wake_request: int = Field(0, alias="wakeRequest", ge=0)
    dismiss_request: int = Field(0, alias="dismissRequest", ge=0)
    dismiss_reason: str | None = Field(None, alias="dismissReason", min_length=1, max_length=MAX_REASON_CHARS)
    image: str | None = Field(None, min_length=1, max_length=512)
    resources: ResourceRequirements | None = None

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(PARAM_FLAGS))
        if unknown:
            raise ValueError(
                f"params key(s) {', '.join(unknown)} not understood by `spine run`; use {', '.join(PARAM_FLAGS)}"
            )
        if len(value) > MAX_PARAMS:
            raise ValueError(f"at most {MAX_PARAMS} params")
        if sum(k in value for k in ("file", "url", "source")) > 1:
            raise ValueError("params may name one data source: file, url or source, not several")
        if value.get("source", "finra-api") != "finra-api":
            raise ValueError("params.source must be finra-api")
        return value

    def to_manifest_spec(self) -> dict[str, Any]:
        """The spec as it goes into a manifest: camelCase, JSON types, unset options left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Condition(BaseModel):
    """A standard Kubernetes condition (``metav1.Condition``)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    type: ConditionType
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field("", max_length=32768)
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(None, alias="observedGeneration", ge=0)


class AttemptRecord(BaseModel):
    """One attempt: its Job, its execution id (``core_executions``) and how it ended."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    attempt: int = Field(ge=1)
    execution_id: str = Field(alias="executionId")
    job: str
    started_at: datetime = Field(alias="startedAt")
    finished_at: datetime | None = Field(None, alias="finishedAt")
    outcome: AttemptOutcome = AttemptOutcome.RUNNING
    reason: str | None = None
    error: str | None = Field(None, max_length=MAX_ERROR_CHARS)
    # The upstream run (annotation spine.marketspine.io/upstream-execution) the attempt read; "" =
    # none. Compared on success with the item's current upstream (``core.lifecycle.succeeded``).
    upstream_execution: str | None = Field(None, alias="upstreamExecution")


class WorkItemStatus(BaseModel):
    """``status`` of a SpineWorkItem, written only by the operator (status subresource)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    state: WorkState | None = None
    attempts: int = Field(0, ge=0)
    total_attempts: int = Field(0, alias="totalAttempts", ge=0)
    last_error: str | None = Field(None, alias="lastError", max_length=MAX_ERROR_CHARS)
    reason: str | None = Field(None, max_length=128)
    message: str | None = Field(None, max_length=MAX_ERROR_CHARS)
    next_attempt_at: datetime | None = Field(None, alias="nextAttemptAt")
    current_job: str | None = Field(None, alias="currentJob")
    current_execution_id: str | None = Field(None, alias="currentExecutionId")
    latest_execution_id: str | None = Field(None, alias="latestExecutionId")
    capture_id: str | None = Field(None, alias="captureId")
    started_at: datetime | None = Field(None, alias="startedAt")
    completed_at: datetime | None = Field(None, alias="completedAt")
    state_changed_at: datetime | None = Field(None, alias="stateChangedAt")
    observed_generation: int | None = Field(None, alias="observedGeneration", ge=0)
    observed_retry_request: int = Field(0, alias="observedRetryRequest", ge=0)
    observed_wake_request: int = Field(0, alias="observedWakeRequest", ge=0)
    observed_dismiss_request: int = Field(0, alias="observedDismissRequest", ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    history: list[AttemptRecord] = Field(default_factory=list, max_length=MAX_HISTORY)

    def to_manifest_status(self) -> dict[str, Any]:
        """The status as the operator writes it: camelCase, and ``None`` for every unset optional
        field, so a merge patch removes what a previous state had set (e.g. ``nextAttemptAt``).
        Inside lists (conditions, history) unset fields are left out: lists are replaced whole by
        a merge patch, and a ``null`` there would be stored, not removed."""
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for name, field in type(self).model_fields.items():
            body.setdefault(field.alias or name, None)
        return body

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is kind), None)


class SpineWorkItem(BaseModel):
    """A whole SpineWorkItem object (what ``kubectl get swi -o yaml`` shows, minus metadata noise)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: WorkItemResourceSpec
    status: WorkItemStatus = Field(default_factory=WorkItemStatus)


def manifest(spec: WorkItemSpec, namespace: str, **extra_spec: Any) -> dict[str, Any]:
    """The SpineWorkItem manifest for ``spec``, named deterministically (SPEC §3.4)."""
    body = WorkItemResourceSpec.model_validate(spec.model_dump(by_alias=True) | extra_spec)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": {
                LABEL_PIPELINE: spec.pipeline,
                f"{GROUP}/tier": spec.partition.tier.value,
                f"{GROUP}/week": spec.partition.week.isoformat(),
            },
        },
        "spec": body.to_manifest_spec(),
    }
