"""``spine work …`` on Kubernetes: the work queue as SpineWorkItem objects.

Called by the CLI (``cli.work``) when ``SPINE_BACKEND=kubernetes``, from a laptop (kubeconfig) or
a CronJob (in-cluster). It has the same methods and results as ``services.queue.LocalQueue``, so
the CLI prints the same output for both backends. It only writes what a user could write with
kubectl — create an item, set ``spec.retryRequest`` or ``spec.cancel`` — and leaves every state
change to the operator, which applies them through the same state machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from market_spine.config import Settings
from market_spine.core.naming import work_item_name
from market_spine.core.partitions import DOMAIN
from market_spine.core.resource import WorkItemResourceSpec, WorkItemStatus, manifest
from market_spine.core.states import Event, IllegalTransition, WorkState, is_terminal, transition
from market_spine.core.workitem import EnqueueResult, FinraPartition, WorkItemSpec, enqueue_each
from market_spine.errors import NotFound, UsageError
from market_spine.kube.client import (
    AlreadyExistsError,
    ConflictError,
    KubeClient,
    NotFoundError,
    load_configuration,
    swi_path,
)


@dataclass(frozen=True)
class KubeWorkItem:
    """A SpineWorkItem as ``spine work list`` shows it (the fields of ``db.workitems.WorkItemRecord``
    that the CLI prints, read from the object instead of the database)."""

    k8s_name: str
    namespace: str
    domain: str
    pipeline: str
    partition_key: str
    state: WorkState
    priority: int
    desired_at: datetime | None
    attempt_count: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    current_job: str | None
    latest_execution_id: str | None
    created_at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> KubeWorkItem:
        meta = obj.get("metadata") or {}
        spec = WorkItemResourceSpec.model_validate(obj.get("spec") or {})
        status = WorkItemStatus.model_validate(obj.get("status") or {})
        state, attempts = effective_state(spec, status)
        return cls(
            k8s_name=str(meta.get("name")),
            namespace=str(meta.get("namespace")),
            domain=spec.domain,
            pipeline=spec.pipeline,
            partition_key=spec.partition_key,
            state=state,
            priority=spec.priority,
            desired_at=spec.desired_at,
            attempt_count=attempts,
            max_attempts=spec.max_attempts,
            next_attempt_at=status.next_attempt_at,
            last_error=status.last_error,
            current_job=status.current_job,
            latest_execution_id=status.latest_execution_id,
            created_at=str(meta.get("creationTimestamp") or ""),
            raw=obj,
        )


def effective_state(spec: WorkItemResourceSpec, status: WorkItemStatus) -> tuple[WorkState, int]:
    """The state (and attempt count) of a work item once the operator has applied what was asked
    of it: a retry request (``spec.retryRequest``) or a cancel (``spec.cancel``) the operator has
    not acted on yet. Reporting this makes ``spine work`` answer the same on both backends right
    after ``retry`` or ``cancel`` (the local queue applies them at once)."""
    state = status.state or WorkState.PENDING
    attempts = status.attempts
    if spec.retry_request > status.observed_retry_request and state in (WorkState.FAILED, WorkState.COMPLETE):
        state, attempts = WorkState.PENDING, 0
    if spec.cancel and not is_terminal(state):
        state = WorkState.CANCELLED
    return state, attempts


class KubernetesQueue:
    """The same interface as ``services.queue.LocalQueue``, over SpineWorkItems in one namespace."""

    def __init__(self, settings: Settings, client: KubeClient | None = None) -> None:
        self.namespace = settings.namespace
        self.client = client or KubeClient(load_configuration(settings.kubeconfig, settings.kube_context))

    def enqueue(self, spec: WorkItemSpec) -> EnqueueResult:
        """Create the work item, or report the existing one: enqueueing twice is a no-op."""
        body = manifest(spec, self.namespace)
        try:
            obj = self.client.create(swi_path(self.namespace), body)
            created = True
        except AlreadyExistsError:
            obj = self.client.get(swi_path(self.namespace, spec.name))
            created = False
        state = KubeWorkItem.from_object(obj).state.value
        return EnqueueResult(
            name=spec.name, pipeline=spec.pipeline, partition_key=spec.partition_key, created=created, state=state
        )

    def backfill(
        self, specs: Iterable[WorkItemSpec], progress: Callable[[EnqueueResult], None] | None = None
    ) -> list[EnqueueResult]:
        return enqueue_each(self.enqueue, specs, progress)

    def list(
        self, states: list[WorkState] | None = None, pipeline: str | None = None, limit: int = 200
    ) -> list[KubeWorkItem]:
        """Work items, most urgent first (priority, then desiredAt, then age), like the local queue."""
        items = []
        for obj in self.client.list(swi_path(self.namespace)):
            try:
                item = KubeWorkItem.from_object(obj)
            except ValidationError:
                continue  # not ours to show: the operator marks it FAILED with the reason
            if item.domain != DOMAIN or (states and item.state not in states):
                continue
            if pipeline and item.pipeline != pipeline:
                continue
            items.append(item)
        items.sort(key=lambda i: (-i.priority, i.desired_at.isoformat() if i.desired_at else "", i.created_at))
        return items[:limit]

    def get(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        name = work_item_name(DOMAIN, pipeline, partition.as_dict())
        try:
            return KubeWorkItem.from_object(self.client.get(swi_path(self.namespace, name)))
        except NotFoundError:
            raise NotFound(f"no work item for {pipeline} {partition.key} (SpineWorkItem {name})") from None

    def retry(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        """Admin retry: FAILED (or COMPLETE, to re-run) → PENDING with a fresh attempt budget.

        Raises ``spec.retryRequest`` above what the operator has acted on; the operator makes the
        transition. The returned item shows the state the operator moves it to.
        """

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            spec, status = obj.get("spec") or {}, obj.get("status") or {}
            current = max(int(spec.get("retryRequest") or 0), int(status.get("observedRetryRequest") or 0))
            return {"spec": {"retryRequest": current + 1}}

        return self._request(pipeline, partition, Event.ADMIN_RETRY, change)

    def cancel(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        """Cancel a work item that has not finished (``spec.cancel: true``); the operator deletes its Job."""
        return self._request(pipeline, partition, Event.CANCEL, lambda _obj: {"spec": {"cancel": True}})

    def _request(
        self,
        pipeline: str,
        partition: FinraPartition,
        event: Event,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> KubeWorkItem:
        for _ in range(5):  # re-read and re-apply on a concurrent change
            item = self.get(pipeline, partition)
            try:
                new_state = transition(item.state, event)
            except IllegalTransition as exc:
                raise UsageError(str(exc)) from None
            patch = change(item.raw)
            patch["metadata"] = {"resourceVersion": item.raw["metadata"]["resourceVersion"]}
            try:
                obj = self.client.merge_patch(swi_path(self.namespace, item.k8s_name), patch)
            except ConflictError:
                continue
            updated = KubeWorkItem.from_object(obj)
            return _with_state(updated, new_state)
        raise UsageError(f"{pipeline} {partition.key}: the work item keeps changing; try again")


def _with_state(item: KubeWorkItem, state: WorkState) -> KubeWorkItem:
    values = {f: getattr(item, f) for f in item.__dataclass_fields__}
    values["state"] = state
    if state is WorkState.PENDING:
        values["attempt_count"] = 0
    return KubeWorkItem(**values)
