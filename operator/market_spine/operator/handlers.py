"""The Kopf handlers of the operator: thin, they only feed the reconciler.

Called by ``operator.runner``, which builds a fresh registry per run with :func:`build_registry`
(so tests can start and stop many operators in one process). What Kopf provides here: login with
the same credentials as our own API client, resilient watch streams of SpineWorkItems and of the
operator's Jobs, in-memory indexes of both (Kopf fills them from the initial listings before it
calls any other handler, so the first reconciliations already see every existing Job), peering
between replicas, and the liveness endpoint with its probes.

Every handler is ``@kopf.on.event``: it runs for each watch event, including the initial listing
after a (re)start, which is how the operator resumes. None of them writes to the object through
Kopf — no finalizers, no progress annotations — all status writes are the reconciler's,
conditional on ``resourceVersion``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from market_spine.core.partitions import DOMAIN
from market_spine.core.resource import GROUP, LABEL_MANAGED_BY, LABEL_WORK_ITEM, MANAGED_BY, PLURAL, VERSION
from market_spine.kube.jobs import job_view
from market_spine.operator.reconciler import Reconciler, item_view

ITEMS_INDEX = "spine_work_items"
JOBS_INDEX = "spine_jobs"
OUR_JOBS = {LABEL_MANAGED_BY: MANAGED_BY}


def build_registry(
    reconciler: Reconciler, login: Callable[[], kopf.ConnectionInfo] | None = None
) -> kopf.OperatorRegistry:
    """A registry with the operator's handlers, bound to ``reconciler``.

    ``login``: returns the credentials Kopf uses, the same as the reconciler's API client (called
    again whenever the API answers 401, so rotated tokens are picked up); ``None`` keeps Kopf's
    own login handlers.
    """
    registry = kopf.OperatorRegistry()

    if login is not None:

        @kopf.on.login(registry=registry)
        def credentials(**_: Any) -> kopf.ConnectionInfo:
            return login()

    @kopf.index(GROUP, VERSION, PLURAL, id=ITEMS_INDEX, registry=registry)
    def spine_work_items(body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
        view = item_view(body)
        return {view.key: view}

    @kopf.index("batch", "v1", "jobs", labels=OUR_JOBS, id=JOBS_INDEX, registry=registry)
    def spine_jobs(body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
        view = job_view(body)
        return {(view.namespace, view.work_item): view}

    @kopf.on.startup(registry=registry)
    async def attach_indexes(**kwargs: Any) -> None:
        reconciler.attach(kwargs[ITEMS_INDEX], kwargs[JOBS_INDEX])

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def work_item_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        key = (str(body.metadata.namespace), str(body.metadata.name))
        spec = body.spec
        partition = spec.get("partition") or {}
        identity = (
            str(spec.get("domain") or DOMAIN),
            str(spec.get("pipeline")),
            str(partition.get("weekEnding")),
            str(partition.get("tier")),
        )
        created = str(body.metadata.creation_timestamp or "")
        started = bool(body.status.get("totalAttempts"))
        reconciler.item_event(type, key, spec.get("pipeline"), body.status.get("state"), identity, created, started)

    @kopf.on.event("batch", "v1", "jobs", labels=OUR_JOBS, registry=registry)
    async def job_event(body: kopf.Body, **_: Any) -> None:
        reconciler.job_event(str(body.metadata.namespace), body.metadata.labels.get(LABEL_WORK_ITEM))

    @kopf.on.probe(id="database", registry=registry)
    def database(**_: Any) -> dict[str, Any]:
        sync = reconciler.dbsync
        return {"up": sync.up, "pending": sync.pending(), "error": sync.last_error}

    @kopf.on.probe(id="queue", registry=registry)
    def queue(**_: Any) -> dict[str, int]:
        return {
            "queued": len(reconciler.queue),
            "running": len(reconciler.admission.running),
            "waiting_for_slot": reconciler.admission.waiting(),
            "events_pending": reconciler.events_pending(),
        }

    return registry
