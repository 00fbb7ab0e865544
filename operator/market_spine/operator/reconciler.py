"""The reconciler: turns the pure planner's decisions into Jobs, status writes, Events and rows.

Called by the Kopf handlers (``operator.handlers``), which only feed it: the watch events of
SpineWorkItems and of their Jobs update the reconciler's view of the cluster and add the item's key
to a :class:`~.queueing.WorkQueue`; a few workers reconcile keys one at a time per item. Events
that change nothing a decision depends on (the echo of our own write, a Job still in the state we
created it in, a duplicate) are recognised and cost no decision. Reconciling an item means:

1. read its latest state (from the watch, or this operator's own newer write), and the Job of its
   current attempt (from the watch, or a GET to be sure before calling it gone);
2. ask a concurrency slot if it is due to start (``queueing.Admission``);
3. call ``core.reconcile.plan`` (pure: states, backoff, timeouts, conditions, events);
4. carry the plan out, in an order that is safe to interrupt anywhere: delete a Job (cancel or
   stuck), create the attempt's Job (deterministic name: ``409`` means adopt), create or re-run the
   chained item, and only then write the status — as a merge patch carrying the
   ``resourceVersion`` it was planned from, so the API server refuses it (``409 Conflict``) if
   anyone changed the object meanwhile (a user, or a second operator replica). On a conflict
   nothing else happens: the item is re-read and planned again;
5. after the write: post the Events, queue the database mirror, update metrics, and schedule the
   next wake-up (a backoff, ``desiredAt``, the pod-start timeout).

A crash between any two steps is repaired by planning again: the Job name is the same, creation
answers 409 and is adopted, the chained item exists, and the status write happens then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from market_spine.config import Settings
from market_spine.core import lifecycle
from market_spine.core import reconcile as core
from market_spine.core.lifecycle import queue_order
from market_spine.core.naming import work_item_name
from market_spine.core.partitions import DOMAIN
from market_spine.core.resource import (
    ANNOTATION_UPSTREAM_EXECUTION,
    PARAM_FLAGS,
    AttemptOutcome,
    AttemptRecord,
    WorkItemResourceSpec,
    WorkItemStatus,
    manifest,
)
from market_spine.core.states import WorkState, is_terminal
from market_spine.core.workitem import DEFAULT_PRIORITY, FinraPartition
from market_spine.kube import client as kube
from market_spine.kube.events import event_manifest
from market_spine.kube.jobs import JobView, build_job, job_view, observe, pod_outcome, reported_capture
from market_spine.operator.dbsync import DbSync, MirrorUpdate, execution_from
from market_spine.operator.metrics import Metrics
from market_spine.operator.queueing import Admission, Order, WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Clock = Callable[[], datetime]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ItemView:
    """One SpineWorkItem, parsed: what a decision about it is made from (built on demand from an
    :class:`ItemRecord`, and dropped after the decision)."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    created: str
    deleting: bool
    spec: WorkItemResourceSpec | None
    spec_error: str | None
    status: WorkItemStatus
    upstream: str | None = None

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def state(self) -> WorkState | None:
        return self.status.state


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """What the operator keeps in memory about one SpineWorkItem between decisions: the few fields
    it looks at across items (limits, priorities, duplicates, metrics) and the rest as compact JSON.
    A parsed object weighs about five times as much, which matters with ten thousand of them. (Not
    compressed: zlib's per-call set-up cost ~0.15 ms per record, most of an event's CPU in bursts,
    to save ~1 KB per item.)"""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    created: str
    deleting: bool
    domain: str
    pipeline: str
    priority: int
    desired: str  # spec.desiredAt, or creationTimestamp: the order among equal priorities
    week: str
    tier: str
    state: WorkState | None
    total_attempts: int
    current_job: str | None
    upstream: str | None  # annotation spine.marketspine.io/upstream-execution: what a chained item reads
    spec_json: bytes  # compact JSON
    status_json: bytes

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    def view(self) -> ItemView:
        """Parse it; never raises (a bad spec is kept as ``spec_error`` and ends in FAILED)."""
        spec: WorkItemResourceSpec | None = None
        error: str | None = None
        try:
            spec = WorkItemResourceSpec.model_validate_json(self.spec_json)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            error = f"spec.{where}: {first.get('msg')}" if where else str(first.get("msg"))
        try:
            status = WorkItemStatus.model_validate_json(self.status_json)
        except ValidationError:
            status = WorkItemStatus()  # unreadable status (not written by us): start over from PENDING
        return ItemView(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            resource_version=self.resource_version,
            generation=self.generation,
            created=self.created,
            deleting=self.deleting,
            spec=spec,
            spec_error=error,
            status=status,
            upstream=self.upstream,
        )


def _state(value: object) -> WorkState | None:
    try:
        return WorkState(str(value)) if value else None
    except ValueError:
        return None


def item_record(body: Mapping[str, Any]) -> ItemRecord:
    """The record of a SpineWorkItem from its JSON (a watch event, or an API answer)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    raw_partition = spec.get("partition")
    partition: Mapping[str, Any] = raw_partition if isinstance(raw_partition, Mapping) else {}
    created = str(meta.get("creationTimestamp") or "")
    priority = spec.get("priority", DEFAULT_PRIORITY)
    total = status.get("totalAttempts") or 0
    intern = sys.intern  # the namespace, domain, pipeline, week and tier repeat across items
    return ItemRecord(
        namespace=intern(str(meta.get("namespace"))),
        name=str(meta.get("name")),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        generation=int(meta.get("generation") or 0),
        created=created,
        deleting=bool(meta.get("deletionTimestamp")),
        domain=intern(str(spec.get("domain") or DOMAIN)),
        pipeline=intern(str(spec.get("pipeline") or "")),
        priority=priority if isinstance(priority, int) else DEFAULT_PRIORITY,
        desired=str(spec.get("desiredAt") or created),
        week=intern(str(partition.get("week") or "")),
        tier=intern(str(partition.get("tier") or "")),
        state=_state(status.get("state")),
        total_attempts=total if isinstance(total, int) else 0,
        current_job=status.get("currentJob") or None,
        upstream=(meta.get("annotations") or {}).get(ANNOTATION_UPSTREAM_EXECUTION) or None,
        spec_json=json.dumps(spec, separators=(",", ":")).encode(),
        status_json=json.dumps(status, separators=(",", ":")).encode(),
    )


def item_view(body: Mapping[str, Any]) -> ItemView:
    return item_record(body).view()


def _newer(a: str, b: str) -> bool:
    """Is resourceVersion ``a`` newer than ``b``? (Only comparable when both are integers, as
    etcd revisions are; otherwise trust the watch stream.)"""
    return a.isdigit() and b.isdigit() and int(a) > int(b)


class _JobNameTaken(kube.KubeError):
    """The attempt's Job name is held by a Job of an older work item of the same name."""


@dataclass
class ReconcilerOptions:
    workers: int = 8
    tick: float = 1.0  # how often the wake-up timer looks at the clock (seconds)
    # One poster keeps each item's Events in the order of its transitions.
    event_workers: int = 1
    rng: random.Random | None = None  # jitter; None = the random module


class Reconciler:
    def __init__(
        self,
        *,
        settings: Settings,
        client: kube.KubeClient,
        dbsync: DbSync,
        metrics: Metrics,
        clock: Clock,
        api_executor: Executor,
        db_executor: Executor,
        identity: str,
        pipeline_error: Callable[[str], str | None],
        options: ReconcilerOptions | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.dbsync = dbsync
        self.metrics = metrics
        self.clock = clock
        self.api_executor = api_executor
        self.db_executor = db_executor
        self.identity = identity
        self.pipeline_error = functools.lru_cache(maxsize=256)(pipeline_error)
        self.options = options or ReconcilerOptions()
        self.timing = core.Timing(
            start_timeout=_seconds(settings.job_start_timeout_seconds),
            default_deadline=_seconds(settings.default_active_deadline_seconds),
        )
        self.queue: WorkQueue[Key] = WorkQueue(clock, tick=self.options.tick, rank=self._rank)
        self.admission: Admission[Key] = Admission(
            settings.max_running, settings.max_running_per_pipeline, lambda key: self.queue.add(key, force=True)
        )
        # What the operator knows of the cluster: the newest version of every work item, and our
        # Jobs by work item. Fed by Kopf's index functions (every watch event) and our own writes.
        self._items: dict[Key, ItemRecord] = {}
        self._jobs: dict[Key, dict[str, JobView]] = {}
        self._seen: dict[Key, tuple[object, ...]] = {}  # signature of each item's last decision
        # (ns, domain, pipeline, week, tier) -> {key: (started, created)}: spots two objects for one partition
        self._by_partition: dict[tuple[str, ...], dict[Key, tuple[bool, str]]] = {}
        # (namespace, name, uid) of the item, the Event, when: small, so a burst's backlog is cheap
        self._events: asyncio.Queue[tuple[tuple[str, str, str], core.Note, datetime]] = asyncio.Queue()
        self.synced = asyncio.Event()  # set once Kopf's indexes are filled from the initial lists
        # Cleared while another replica holds the peering (``operator.peering``): decide nothing.
        self.active = asyncio.Event()
        self.active.set()
        self._background: set[asyncio.Task[None]] = set()
        self.events_seen = 0

    # --- feeding (called by the Kopf handlers) ---------------------------------------------

    def echo(self, key: Key, uid: str, resource_version: str) -> bool:
        """Is this watch event the version already known (the echo of this operator's own write)?
        Then it changes nothing, and the handler need not even parse it."""
        known = self._items.get(key)
        if known is None or known.uid != uid or known.resource_version != resource_version:
            return False
        self.events_seen += 1
        return True

    def item_event(self, view: ItemRecord, identity: tuple[str, ...]) -> None:
        """A work item was listed, added or changed (from Kopf's index function, which sees every
        watch event but deletions). ``identity``: (domain, pipeline, week, tier), to spot two
        objects for one partition.

        Called for the initial listing too, before the operator may decide anything: the workers
        wait for ``synced``, which the first handler call sets once every index is complete."""
        self.events_seen += 1
        key = view.key
        self._remember(view)
        self._by_partition.setdefault((key[0], *identity), {})[key] = (bool(view.total_attempts), view.created)
        if view.pipeline:
            self.admission.observe(key, view.pipeline, view.state is WorkState.RUNNING)
        self.queue.add(key)

    def item_deleted(self, key: Key, identity: tuple[str, ...]) -> None:
        self.events_seen += 1
        partition = (key[0], *identity)
        same = self._by_partition.get(partition, {})
        same.pop(key, None)
        if not same:
            self._by_partition.pop(partition, None)
        self._items.pop(key, None)
        self._seen.pop(key, None)
        self.queue.drop(key)
        self.admission.forget(key)

    def job_event(self, view: JobView, deleted: bool = False) -> None:
        """One of our Jobs was listed, added, changed or deleted."""
        self.events_seen += 1
        if not view.work_item:
            return
        key = (view.namespace, view.work_item)
        jobs = self._jobs.setdefault(key, {})
        if deleted:
            jobs.pop(view.name, None)
            if not jobs:
                del self._jobs[key]
        else:
            jobs[view.name] = view
        self.queue.add(key)

    # --- reading ----------------------------------------------------------------------------

    def _remember(self, view: ItemRecord) -> None:
        """Keep the newest version we know: from the watch, or from our own write's answer (which
        can be newer than the watch has shown yet)."""
        known = self._items.get(view.key)
        if known is None or known.uid != view.uid or not _newer(known.resource_version, view.resource_version):
            self._items[view.key] = view

    def current(self, key: Key) -> ItemRecord | None:
        return self._items.get(key)

    def jobs_of(self, key: Key) -> list[JobView]:
        return list(self._jobs.get(key, {}).values())

    def all_items(self) -> list[ItemRecord]:
        return list(self._items.values())

    def state_counts(self) -> dict[tuple[str, WorkState], int]:
        counts: dict[tuple[str, WorkState], int] = {}
        for view in self.all_items():
            if view.pipeline:
                k = (view.domain, view.state or WorkState.PENDING)
                counts[k] = counts.get(k, 0) + 1
        return counts

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.api_executor, functools.partial(fn, *args, **kwargs))

    # --- the loop ---------------------------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        """Start the workers, the wake-up timer and the event poster; the caller cancels them.

        The tasks exist as soon as this returns: Kopf treats tasks created after it started as
        its own and waits for them on exit."""
        tasks = [asyncio.create_task(self.queue.run_timer(), name="spine wake-up timer")]
        tasks += [
            asyncio.create_task(self._worker(), name=f"spine reconciler {i}") for i in range(self.options.workers)
        ]
        tasks += [
            asyncio.create_task(self._post_events(), name=f"spine event poster {i}")
            for i in range(self.options.event_workers)
        ]
        return tasks

    async def _worker(self) -> None:
        await self.synced.wait()  # decide nothing before Kopf's indexes hold the whole cluster
        while True:
            await self.active.wait()
            key, forced = await self.queue.get()
            if not self.active.is_set():  # stood by meanwhile: the resync on resuming re-queues it
                self.queue.done(key)
                continue
            try:
                await self.reconcile(key, forced=forced)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.admission.release(key)
                kind = type(exc).__name__
                self.metrics.reconcile_errors.labels(kind).inc()
                delay = self.queue.retry(key)
                if isinstance(exc, kube.KubeError):
                    log.warning("reconcile %s/%s failed (%s), retrying in %.1fs: %s", *key, kind, delay, exc)
                else:
                    log.exception("reconcile %s/%s failed, retrying in %.1fs", *key, delay)
            finally:
                self.queue.done(key)

    def _signature(self, record: ItemRecord) -> tuple[object, ...]:
        """What a decision about an item depends on, besides the clock: its version and the state
        of the Job of its current attempt (as the watch shows it)."""
        name = record.current_job
        job = self._jobs.get(record.key, {}).get(name) if name else None
        return (record.uid, record.resource_version, name, job is not None and (job.started, job.succeeded, job.failed))

    async def reconcile(self, key: Key, *, forced: bool = True) -> None:
        record = self.current(key)
        if record is None or record.deleting:
            self.admission.forget(key)
            self._seen.pop(key, None)
            return
        # Watch events of our own writes, and of Jobs in the state we just created them in, come
        # back here: nothing changed, so there is nothing to decide (time-based wake-ups, granted
        # slots and retries are forced).
        signature = self._signature(record)
        if not forced and self._seen.get(key) == signature:
            return
        self.metrics.reconciles.inc()  # decisions made (events that changed nothing are not counted)
        view = record.view()
        now = self.clock()
        job = None
        if view.state is WorkState.RUNNING and view.status.current_job:
            job = await self._observe_job(view)
        pipeline_error = self.pipeline_error(view.spec.pipeline) if view.spec is not None else None
        obs = core.Observation(
            name=view.name,
            namespace=view.namespace,
            uid=view.uid,
            generation=view.generation,
            spec=view.spec,
            status=view.status,
            now=now,
            job=job,
            spec_error=view.spec_error,
            pipeline_error=pipeline_error,
            duplicate_of=self._duplicate_of(record),
            upstream=view.upstream,
        )
        # Plan as if a concurrency slot were free; only a plan that starts an attempt needs one,
        # and if none is granted, plan again without (the item waits, ConcurrencyLimit).
        plan = core.plan(obs, self.timing, self.options.rng)
        spec = view.spec
        if plan.create_job and spec and not self.admission.request(key, spec.pipeline, self._order(record)):
            obs = replace(obs, may_start=False)
            plan = core.plan(obs, self.timing, self.options.rng)
        await self._execute(view, obs, plan, signature)

    def _duplicate_of(self, record: ItemRecord) -> str | None:
        """The older work item of the same partition, if this one has never started."""
        if record.total_attempts:
            return None
        same = self._by_partition.get((record.namespace, record.domain, record.pipeline, record.week, record.tier), {})
        if len(same) < 2:
            return None
        # One that already ran wins, then the one named as `spine work enqueue` names it, then the
        # oldest (timestamps have one-second resolution, so ties are broken by name).
        try:
            partition = FinraPartition.model_validate({"week": record.week, "tier": record.tier}).as_dict()
        except ValueError:  # not a valid partition: no name is canonical
            partition = {}
        canonical = work_item_name(record.domain, record.pipeline, partition) if partition else ""
        keeper = min(same.items(), key=lambda kv: (not kv[1][0], kv[0][1] != canonical, kv[1][1], kv[0][1]))[0]
        return None if keeper == record.key else keeper[1]

    def _rank(self, key: Key) -> tuple[object, ...]:
        record = self.current(key)
        if record is None or not record.pipeline:
            return (0,)
        return (1, *self._order(record))

    @staticmethod
    def _order(record: ItemRecord) -> Order:
        return queue_order(record.priority, record.desired, record.created, record.name)

    async def _observe_job(self, view: ItemView) -> core.JobObservation:
        name = view.status.current_job
        assert name is not None
        found = self._jobs.get(view.key, {}).get(name)
        if found is None:  # not in the watch cache (yet, or any more): ask the API server
            try:
                found = job_view(await self.call(self.client.get, kube.job_path(view.namespace, name)))
            except kube.NotFoundError:
                return observe(None, name)
        pod = None
        capture = None
        if found.succeeded or found.failed:
            pods = await self.call(self.client.list, kube.pods_path(view.namespace), label_selector=f"job-name={name}")
            pod = pod_outcome(pods, name)
        if found.succeeded:
            capture = reported_capture(pod.message if pod else None)
            if capture is None and view.status.current_execution_id:
                loop = asyncio.get_running_loop()
                capture = await loop.run_in_executor(
                    self.db_executor, self.dbsync.capture_of, view.status.current_execution_id
                )
        return observe(found, name, pod, capture)

    # --- carrying a plan out ----------------------------------------------------------------

    async def _execute(
        self, view: ItemView, obs: core.Observation, plan: core.Plan, signature: tuple[object, ...]
    ) -> None:
        key = view.key
        if plan.delete_job:
            await self._delete_job(view.namespace, plan.delete_job)
        if plan.create_job is not None:
            assert view.spec is not None
            rejected = await self._create_job(view, view.spec, plan.create_job)
            if rejected is not None:  # the API server refused the Job: the attempt fails at once
                refused = core.JobObservation(
                    name=plan.create_job.name, exists=True, failed=True, reason=core.JOB_REJECTED, message=rejected
                )
                again = core.plan(replace(obs, status=plan.status, job=refused), self.timing, self.options.rng)
                again.notes[:0] = plan.notes
                again.transitions[:0] = plan.transitions
                plan = again
        notes = list(plan.notes)
        if plan.chain is not None:
            notes += await self._chain(view, plan.chain)
        if plan.changed:
            record = await self._write_status(view, plan.status)
            if record is None:
                self.admission.release(key)
                self._seen.pop(key, None)
                self.queue.add(key, force=True)
                return
            self._remember(record)
            written = replace(view, resource_version=record.resource_version, status=plan.status)
            self._after_write(written, obs, plan, notes)
            signature = self._signature(record)
            if plan.create_job is not None:  # its Job arrives from the watch just as we created it
                signature = (*signature[:3], (False, False, False))
            self._seen[key] = signature
        else:
            self._seen[key] = signature
            if view.spec is not None and view.state is not WorkState.RUNNING:
                self.admission.release(key)
        if plan.wake_at is not None:
            self.queue.add_at(key, plan.wake_at)

    async def _delete_job(self, namespace: str, name: str) -> None:
        with contextlib.suppress(kube.NotFoundError):
            await self.call(self.client.delete, kube.job_path(namespace, name), propagation="Background")

    async def _create_job(self, view: ItemView, spec: WorkItemResourceSpec, request: core.JobRequest) -> str | None:
        body = build_job(
            work_item=view.name,
            namespace=view.namespace,
            uid=view.uid,
            spec=spec,
            attempt=request.attempt,
            name=request.name,
            execution_id=request.execution_id,
            settings=self.settings,
        )
        try:
            await self.call(self.client.create, kube.job_path(view.namespace), body, parse=False)
        except kube.AlreadyExistsError:
            # Created by an earlier pass that did not get to write the status (a crash, a
            # conflict, a second replica): it is this attempt's Job. Adopt it, never make another.
            existing = job_view(await self.call(self.client.get, kube.job_path(view.namespace, request.name)))
            if existing.owner_uid not in (None, view.uid):
                raise _JobNameTaken(
                    f"Job {request.name} belongs to an earlier SpineWorkItem {view.name}; waiting for it to be"
                    " garbage-collected"
                ) from None
            self.metrics.adopted_jobs.inc()
            log.info("adopted existing Job %s/%s for attempt %d", view.namespace, request.name, request.attempt)
        except kube.InvalidError as exc:
            return str(exc)
        return None

    async def _write_status(self, view: ItemView, status: WorkItemStatus) -> ItemRecord | None:
        patch = {"metadata": {"resourceVersion": view.resource_version}, "status": status.to_manifest_status()}
        path = kube.swi_path(view.namespace, view.name, status=True)
        try:
            return item_record(await self.call(self.client.merge_patch, path, patch))
        except kube.ConflictError:
            # Someone changed the object since we read it. Plan again from the fresh object.
            self.metrics.status_conflicts.inc()
            try:
                fresh = item_record(await self.call(self.client.get, kube.swi_path(view.namespace, view.name)))
            except kube.NotFoundError:
                return None
            self._remember(fresh)
            return None
        except kube.NotFoundError:
            return None

    def _after_write(self, view: ItemView, obs: core.Observation, plan: core.Plan, notes: list[core.Note]) -> None:
        key = view.key
        spec = view.spec
        now = obs.now
        state = view.state
        started = any(after is WorkState.RUNNING for _, after in plan.transitions)
        for note in notes:
            if note.reason == "Accepted" and state is not WorkState.PENDING:
                continue  # the Started (or failure) event that follows says it all
            self._events.put_nowait(((view.namespace, view.name, view.uid), note, now))
        if spec is not None:
            self.admission.observe(key, spec.pipeline, state is WorkState.RUNNING)
            if state is not WorkState.RUNNING:
                self.admission.release(key)
            old = {(r.attempt, r.outcome, r.finished_at) for r in obs.status.history}
            changed: list[AttemptRecord] = [
                r for r in view.status.history if (r.attempt, r.outcome, r.finished_at) not in old
            ]
            executions = [execution_from(spec, r, _capture(view.status, r)) for r in changed]
            self.dbsync.record(MirrorUpdate.from_status(view.namespace, view.name, spec, view.status, now), executions)
            domain = spec.domain
            for before, after in plan.transitions:
                self.metrics.transitions.labels(domain, after.value).inc()
                if before in (WorkState.FAILED, WorkState.COMPLETE, WorkState.CANCELLED) and after is WorkState.PENDING:
                    self.metrics.admin_retries.labels(domain).inc()
            if plan.create_job is not None and started:
                self.metrics.attempts.labels(domain, spec.pipeline).inc()
            if plan.retries_scheduled:
                self.metrics.retries.labels(domain, spec.pipeline).inc(plan.retries_scheduled)
            for record in plan.finished:
                if record.finished_at is not None:
                    seconds = (record.finished_at - record.started_at).total_seconds()
                    self.metrics.job_duration.labels(spec.pipeline, record.outcome.value).observe(max(seconds, 0.0))
        if state is not None and is_terminal(state):
            task = asyncio.get_running_loop().create_task(self._delete_orphans(view))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _delete_orphans(self, view: ItemView) -> None:
        """A terminal item keeps no unfinished Job but its last one (e.g. a Job created by a pass
        whose status write lost a race with a cancel)."""
        for job in self.jobs_of(view.key):
            unfinished = not (job.succeeded or job.failed)
            if job.name != view.status.current_job and unfinished and job.owner_uid in (None, view.uid):
                log.info("deleting orphan Job %s/%s of %s", job.namespace, job.name, view.state)
                try:
                    await self._delete_job(job.namespace, job.name)
                except kube.KubeError as exc:
                    log.warning("cannot delete orphan Job %s/%s: %s", job.namespace, job.name, exc)

    # --- chained work items -----------------------------------------------------------------

    async def _chain(self, view: ItemView, step: lifecycle.ChainNext) -> list[core.Note]:
        """Carry out ``core.lifecycle.chain`` for the next stage's item: create it, or point it at
        this run and re-run it (by raising its ``spec.retryRequest``: its own reconcile re-opens it
        through the same lifecycle) or let it finish first. The annotation records which upstream
        run it follows, so a replayed completion changes nothing."""
        spec = view.spec
        assert spec is not None
        step = replace(step, params={k: v for k, v in step.params.items() if k in PARAM_FLAGS})
        extra: dict[str, Any] = {}
        if spec.image:
            extra["image"] = spec.image
        if spec.resources is not None:
            extra["resources"] = spec.resources.model_dump()
        body = manifest(spec.downstream(step), view.namespace, **extra)
        body["metadata"]["annotations"] = {ANNOTATION_UPSTREAM_EXECUTION: step.upstream_execution_id}
        name = body["metadata"]["name"]
        try:
            await self.call(self.client.create, kube.swi_path(view.namespace), body)
            decision = lifecycle.chain(step, None, now=self.clock())
            return [replace(decision.note, message=f"created {name} ({step.pipeline})")] if decision.note else []
        except kube.AlreadyExistsError:
            pass
        existing = item_view(await self.call(self.client.get, kube.swi_path(view.namespace, name)))
        if existing.spec is None:
            return [core.Note("Warning", "ChainSkipped", f"{name} has an invalid spec: {existing.spec_error}")]
        downstream = core.item_of(name, existing.spec, existing.status, existing.upstream)
        decision = lifecycle.chain(step, downstream, now=self.clock())
        if decision.action is lifecycle.ChainAction.NOTHING:
            return []  # this completion was chained already (a replayed event, or a restart)
        old_params = existing.spec.params
        patch: dict[str, Any] = {
            "metadata": {
                "resourceVersion": existing.resource_version,
                "annotations": {ANNOTATION_UPSTREAM_EXECUTION: step.upstream_execution_id},
            },
            "spec": {"params": {k: step.params.get(k) for k in set(old_params) | set(step.params)}},
        }
        if decision.action is lifecycle.ChainAction.RERUN:
            current = max(existing.spec.retry_request, existing.status.observed_retry_request)
            patch["spec"]["retryRequest"] = current + 1
        await self.call(self.client.merge_patch, kube.swi_path(view.namespace, name), patch)
        return [replace(decision.note, message=f"{name}: {decision.note.message}")] if decision.note else []

    # --- events -----------------------------------------------------------------------------

    async def _post_events(self) -> None:
        while True:
            target, note, now = await self._events.get()
            await self._post_event(target, note, now)
            # Events are the least urgent of an operator's writes: while items wait to be
            # reconciled, Jobs and status go first and Events trickle out (at most ~100/s, so they
            # are never starved); when the queue is empty they go out as fast as they come.
            if len(self.queue):
                await asyncio.sleep(0.01)

    async def _post_event(self, target: tuple[str, str, str], note: core.Note, now: datetime) -> None:
        namespace, name, uid = target
        body = event_manifest(
            namespace=namespace,
            name=name,
            uid=uid,
            kind=note.type,
            reason=note.reason,
            message=note.message,
            now=now,
            instance=self.identity,
        )
        try:
            await self.call(self.client.create, kube.events_path(namespace), body, parse=False)
        except kube.KubeError as exc:  # events are best effort: the status holds the truth
            log.info("cannot post event %s on %s/%s: %s", note.reason, namespace, name, exc)

    def events_pending(self) -> int:
        return self._events.qsize()

    # --- resync -----------------------------------------------------------------------------

    def resync(self) -> int:
        """Re-record every work item in the database mirror and re-queue every unfinished one
        (nothing while standing by: this replica's view may be stale)."""
        if not self.active.is_set():
            return 0
        now = self.clock()
        count = 0
        for record in self.all_items():
            view = record.view()
            if view.spec is None or view.state is None:
                self.queue.add(view.key, force=True)
                continue
            executions = [execution_from(view.spec, r, _capture(view.status, r)) for r in view.status.history]
            self.dbsync.record(
                MirrorUpdate.from_status(view.namespace, view.name, view.spec, view.status, now), executions
            )
            if not is_terminal(view.state):
                self.queue.add(view.key, force=True)
            count += 1
        return count


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _capture(status: WorkItemStatus, record: AttemptRecord) -> str | None:
    """The capture of an attempt, known only for the latest successful one."""
    if record.outcome is AttemptOutcome.SUCCEEDED and record.execution_id == status.latest_execution_id:
        return status.capture_id
    return None
