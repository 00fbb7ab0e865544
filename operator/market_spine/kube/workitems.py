"""``spine work …`` on Kubernetes: the work queue as SpineWorkItem objects.

Called by the CLI (``cli.work``) when ``SPINE_BACKEND=kubernetes``, from a laptop (kubeconfig) or
a CronJob (in-cluster). It has the same methods and results as ``services.queue.LocalQueue``, so
the CLI prints the same output for both backends. It only writes what a user could write with
kubectl — create an item, raise ``spec.retryRequest``, ``spec.wakeRequest`` or
``spec.dismissRequest``, set ``spec.cancel`` — and leaves every state change to the operator,
which carries them out through ``core.lifecycle``, the same functions the local queue calls. It
asks the lifecycle first too, so a request the operator would refuse is refused here, in the same
words, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from market_spine.config import Settings
from market_spine.core import lifecycle
from market_spine.core import reconcile as planner
from market_spine.core.lifecycle import queue_order
from market_spine.core.naming import work_item_name
from market_spine.core.partitions import DOMAIN
from market_spine.core.resource import ANNOTATION_UPSTREAM_EXECUTION, WorkItemResourceSpec, WorkItemStatus, manifest
from market_spine.core.states import Event, IllegalTransition, WorkState
from market_spine.core.workitem import EnqueueResult, FinraPartition, WorkItemSpec, enqueue_each
from market_spine.errors import ChangedMeanwhile, NotFound, UsageError
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
    item: lifecycle.Item = field(repr=False, compare=False)
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: dict[str, Any], now: datetime) -> KubeWorkItem:
        meta = obj.get("metadata") or {}
        spec = WorkItemResourceSpec.model_validate(obj.get("spec") or {})
        item = effective_item(obj, now)
        return cls(
            k8s_name=str(meta.get("name")),
            namespace=str(meta.get("namespace")),
            domain=spec.domain,
            pipeline=spec.pipeline,
            partition_key=spec.partition_key,
            state=item.state,
            priority=spec.priority,
            desired_at=spec.desired_at,
            attempt_count=item.attempts,
            max_attempts=spec.max_attempts,
            next_attempt_at=item.next_attempt_at,
            last_error=item.last_error,
            current_job=(obj.get("status") or {}).get("currentJob"),
            latest_execution_id=item.latest_execution_id,
            created_at=str(meta.get("creationTimestamp") or ""),
            item=item,
            raw=obj,
        )


# Only the requests are carried out here; the time limits of an attempt do not matter.
_TIMING = planner.Timing(start_timeout=timedelta(minutes=10), default_deadline=timedelta(hours=1))


def effective_item(obj: dict[str, Any], now: datetime) -> lifecycle.Item:
    """The work item once the operator has acted on what was asked of it (``spec.retryRequest``,
    ``spec.wakeRequest``, ``spec.dismissRequest``, ``spec.cancel``) but has not written yet, by the
    operator's own planner (``core.reconcile.requested``), so ``spine work`` answers the same on
    both backends right after a request (the local queue applies them at once)."""
    meta = obj.get("metadata") or {}
    spec = WorkItemResourceSpec.model_validate(obj.get("spec") or {})
    status = WorkItemStatus.model_validate(obj.get("status") or {})
    upstream = (meta.get("annotations") or {}).get(ANNOTATION_UPSTREAM_EXECUTION)
    observation = planner.Observation(
        name=str(meta.get("name")),
        namespace=str(meta.get("namespace")),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=status,
        now=now,
        may_start=False,
        upstream=upstream,
    )
    return planner.item_of(observation.name, spec, planner.requested(observation, _TIMING), upstream)


class KubernetesQueue:
    """The same interface as ``services.queue.LocalQueue``, over SpineWorkItems in one namespace."""

    def __init__(
        self, settings: Settings, client: KubeClient | None = None, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.namespace = settings.namespace
        self.client = client or KubeClient(load_configuration(settings.kubeconfig, settings.kube_context))
        self.clock = clock or (lambda: datetime.now(UTC))

    def enqueue(self, spec: WorkItemSpec) -> EnqueueResult:
        """Create the work item, or report the existing one: enqueueing twice is a no-op."""
        body = manifest(spec, self.namespace)
        try:
            obj = self.client.create(swi_path(self.namespace), body)
            created = True
        except AlreadyExistsError:
            obj = self.client.get(swi_path(self.namespace, spec.name))
            created = False
        state = KubeWorkItem.from_object(obj, self.clock()).state.value
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
        """Work items, most urgent first (``core.lifecycle.queue_order``), like the local queue."""
        items = []
        now = self.clock()
        for obj in self.client.list(swi_path(self.namespace)):
            try:
                item = KubeWorkItem.from_object(obj, now)
            except ValidationError:
                continue  # not ours to show: the operator marks it FAILED with the reason
            if item.domain != DOMAIN or (states and item.state not in states):
                continue
            if pipeline and item.pipeline != pipeline:
                continue
            items.append(item)
        items.sort(
            key=lambda i: queue_order(
                i.priority, i.desired_at.isoformat() if i.desired_at else i.created_at, i.created_at, i.k8s_name
            )
        )
        return items[:limit]

    def get(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        name = work_item_name(DOMAIN, pipeline, partition.as_dict())
        try:
            return KubeWorkItem.from_object(self.client.get(swi_path(self.namespace, name)), self.clock())
        except NotFoundError:
            raise NotFound(f"no work item for {pipeline} {partition.key} (SpineWorkItem {name})") from None

    def retry(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        """Admin retry: FAILED, COMPLETE (to re-run) or CANCELLED (to re-open) → PENDING with a
        fresh attempt budget. Raises ``spec.retryRequest`` above what the operator has acted on and
        clears ``spec.cancel``; the operator makes the transition."""

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            return {"spec": {"retryRequest": _next(obj, "retryRequest", "observedRetryRequest"), "cancel": False}}

        return self._request(pipeline, partition, lifecycle.requested(Event.ADMIN_RETRY), change)

    def cancel(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        """Cancel a work item that has not finished (``spec.cancel: true``); the operator deletes its Job."""
        cancel = {"spec": {"cancel": True}}
        return self._request(pipeline, partition, lifecycle.requested(Event.CANCEL), lambda _obj: cancel)

    def wake(self, pipeline: str, partition: FinraPartition) -> KubeWorkItem:
        """Run a RETRY_WAIT item now (``spec.wakeRequest``), not at its ``nextAttemptAt``."""

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            return {"spec": {"wakeRequest": _next(obj, "wakeRequest", "observedWakeRequest")}}

        return self._request(pipeline, partition, lifecycle.requested(Event.WAKE), change)

    def dismiss(self, pipeline: str, partition: FinraPartition, why: str) -> KubeWorkItem:
        """FAILED → CANCELLED (reason Dismissed) through ``spec.dismissRequest`` and ``spec.dismissReason``."""

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            number = _next(obj, "dismissRequest", "observedDismissRequest")
            return {"spec": {"dismissRequest": number, "dismissReason": why or None}}

        return self._request(pipeline, partition, lifecycle.requested(Event.DISMISS, why), change)

    def _request(
        self,
        pipeline: str,
        partition: FinraPartition,
        decide: Callable[[lifecycle.Item, datetime], lifecycle.Decision],
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> KubeWorkItem:
        for _ in range(ATTEMPTS):  # re-read and re-apply on a concurrent change
            item = self.get(pipeline, partition)
            try:
                decide(item.item, self.clock())  # refused here as the operator would refuse it
            except IllegalTransition as exc:
                raise UsageError(str(exc)) from None
            patch = change(item.raw)
            patch["metadata"] = {"resourceVersion": item.raw["metadata"]["resourceVersion"]}
            try:
                obj = self.client.merge_patch(swi_path(self.namespace, item.k8s_name), patch)
            except ConflictError:
                continue
            return KubeWorkItem.from_object(obj, self.clock())
        raise ChangedMeanwhile(
            f"the work item changed meanwhile, {ATTEMPTS} times: {pipeline} {partition.key} is busy; try again"
        )


ATTEMPTS = 5  # reads and decisions a command makes before it reports a work item that keeps changing


def _next(obj: dict[str, Any], request: str, observed: str) -> int:
    """A request counter's next value: above both what was asked and what the operator acted on."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return max(int(spec.get(request) or 0), int(status.get(observed) or 0)) + 1
