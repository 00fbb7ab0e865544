"""The Kopf handlers of the operator: thin, they only feed the reconciler.

Called by ``operator.runner``, which builds a fresh registry per run with :func:`build_registry`
(so tests can start and stop many operators in one process). What Kopf provides here: login with
the same credentials as our own API client, resilient watch streams of SpineWorkItems and of the
operator's Jobs, the guarantee that no handler runs before both initial listings are complete,
peering between replicas, and the liveness endpoint with its probes.

The index functions see every watch event (the initial listing after a (re)start included, which
is how the operator resumes) and hand it to the reconciler; the two ``@kopf.on.event`` handlers
report deletions and the end of the initial listings. None of them writes to an object through
Kopf — no finalizers, no progress annotations, no diff-base — all status writes are the
reconciler's, conditional on ``resourceVersion``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from market_spine.core.partitions import DOMAIN
from market_spine.core.resource import GROUP, LABEL_MANAGED_BY, MANAGED_BY, PLURAL, VERSION
from market_spine.kube.jobs import job_view
from market_spine.operator.reconciler import Reconciler, item_record


def _identity(body: kopf.Body) -> tuple[str, str, str, str]:
    """(domain, pipeline, week, tier) of a work item, to spot two objects for one partition."""
    spec = body.spec
    partition = spec.get("partition") or {}
    return (
        str(spec.get("domain") or DOMAIN),
        str(spec.get("pipeline")),
        str(partition.get("week")),
        str(partition.get("tier")),
    )


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

    # The indexes are the operator's memory of the cluster, and their functions are also where it
    # hears about every change: Kopf calls them for each watch event (but DELETED), before any
    # handler. One async call per event is the cheapest way Kopf offers to see every event.

    # Kopf calls index functions for every watch event but deletions, before any handler, and
    # starts handlers only once every index is filled from its initial listing. The operator uses
    # them as its event feed (one async call per event, the cheapest hook Kopf has) and keeps its
    # own view of the cluster (``Reconciler``): Kopf updates an index only after the call returns,
    # and a decision must never be made on the version before the event.

    @kopf.index(GROUP, VERSION, PLURAL, id=ITEMS_INDEX, registry=registry)
    async def spine_work_items(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bool]:
        meta = body.metadata
        key = (str(meta.namespace), str(meta.name))
        if not reconciler.echo(key, str(meta.uid), str(meta.get("resourceVersion"))):
            reconciler.item_event(item_record(body), _identity(body))
        return {key: True}

    @kopf.index("batch", "v1", "jobs", labels=OUR_JOBS, id=JOBS_INDEX, registry=registry)
    async def spine_jobs(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bool]:
        view = job_view(body)
        reconciler.job_event(view)
        return {(view.namespace, view.work_item): True}

    # The first handler call means Kopf has listed everything: the operator may start deciding.
    # After that the handlers only report deletions, which indexes do not see (``when`` is
    # checked without invoking anything).
    def deleted_or_first(type: str | None, **_: Any) -> bool:
        return type == "DELETED" or not reconciler.synced.is_set()

    @kopf.on.event(GROUP, VERSION, PLURAL, when=deleted_or_first, registry=registry)
    async def work_item_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        reconciler.synced.set()
        if type == "DELETED":
            reconciler.item_deleted((str(body.metadata.namespace), str(body.metadata.name)), _identity(body))

    @kopf.on.event("batch", "v1", "jobs", labels=OUR_JOBS, when=deleted_or_first, registry=registry)
    async def job_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        reconciler.synced.set()
        if type == "DELETED":  # e.g. deleted while running: the owner must notice
            reconciler.job_event(job_view(body), deleted=True)

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
