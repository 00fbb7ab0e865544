"""The local work queue: ``spine work enqueue|backfill|list|retry|cancel|wake|dismiss`` on PostgreSQL.

Called by the CLI when ``SPINE_BACKEND=local`` (the default). The Kubernetes backend
(``kube.workitems.KubernetesQueue``) offers the same methods over SpineWorkItems, so the CLI does
not care which one it holds. Every change is decided by ``core.lifecycle`` and written
compare-and-set on the version it was read at (``db.workitems.save``): if a worker wrote the item
meanwhile (a heartbeat, the end of an attempt), the command reads it again and decides again, so a
cancel can never be overwritten by the attempt it cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Engine

from market_spine.core import lifecycle
from market_spine.core.partitions import DOMAIN
from market_spine.core.states import Event, IllegalTransition, WorkState
from market_spine.core.workitem import EnqueueResult, FinraPartition, WorkItemSpec, enqueue_each
from market_spine.db import workitems as repo
from market_spine.errors import ChangedMeanwhile, NotFound, UsageError
from market_spine.services.decisions import carry_out

Clock = Callable[[], datetime]
Decide = Callable[[lifecycle.Item, datetime], lifecycle.Decision]
ATTEMPTS = 5  # reads and decisions a command makes before it reports a work item that keeps changing


class LocalQueue:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def enqueue(self, spec: WorkItemSpec) -> EnqueueResult:
        """Create the work item, or report the existing one: enqueueing twice is a no-op."""
        if spec.desired_at is None:  # "now" is the queue's clock, not the database server's
            spec = spec.model_copy(update={"desired_at": self.clock()})
        with self.engine.begin() as conn:
            record, created = repo.insert_if_absent(conn, spec, k8s_name=spec.name)
        return EnqueueResult(
            name=spec.name,
            pipeline=spec.pipeline,
            partition_key=spec.partition_key,
            created=created,
            state=record.state.value,
        )

    def backfill(
        self, specs: Iterable[WorkItemSpec], progress: Callable[[EnqueueResult], None] | None = None
    ) -> list[EnqueueResult]:
        return enqueue_each(self.enqueue, specs, progress)

    def list(
        self, states: list[WorkState] | None = None, pipeline: str | None = None, limit: int = 200
    ) -> list[repo.WorkItemRecord]:
        with self.engine.connect() as conn:
            return repo.list_items(conn, domain=DOMAIN, states=states, pipeline=pipeline, limit=limit)

    def get(self, pipeline: str, partition: FinraPartition) -> repo.WorkItemRecord:
        with self.engine.connect() as conn:
            record = repo.get_by_key(conn, DOMAIN, pipeline, partition.key)
        if record is None:
            raise NotFound(f"no work item for {pipeline} {partition.key}")
        return record

    def retry(self, pipeline: str, partition: FinraPartition) -> repo.WorkItemRecord:
        """Admin retry: FAILED, COMPLETE (a deliberate re-run) or CANCELLED (re-open) → PENDING with a
        fresh budget."""
        return self._apply(pipeline, partition, lifecycle.requested(Event.ADMIN_RETRY))

    def cancel(self, pipeline: str, partition: FinraPartition) -> repo.WorkItemRecord:
        """Cancel; a running attempt is stopped by its worker, which finds its lease gone, and
        whatever it writes is rolled back by the fence of its data transaction."""
        return self._apply(pipeline, partition, lifecycle.requested(Event.CANCEL))

    def wake(self, pipeline: str, partition: FinraPartition) -> repo.WorkItemRecord:
        """Make a RETRY_WAIT item due now; the next free worker runs it."""
        return self._apply(pipeline, partition, lifecycle.requested(Event.WAKE))

    def dismiss(self, pipeline: str, partition: FinraPartition, why: str) -> repo.WorkItemRecord:
        """FAILED → CANCELLED (reason Dismissed): the doctor stops reporting it."""
        return self._apply(pipeline, partition, lifecycle.requested(Event.DISMISS, why))

    def _apply(self, pipeline: str, partition: FinraPartition, decide: Decide) -> repo.WorkItemRecord:
        for _ in range(ATTEMPTS):
            record = self.get(pipeline, partition)
            now = self.clock()
            try:
                decision = decide(record.item(), now)
            except IllegalTransition as exc:
                raise UsageError(str(exc)) from None
            try:
                with self.engine.begin() as conn:
                    return carry_out(conn, record, decision, now=now).record
            except ChangedMeanwhile:
                continue  # a worker wrote it (a heartbeat, an attempt's end): read again, decide again
        raise ChangedMeanwhile(
            f"the work item changed meanwhile, {ATTEMPTS} times: {pipeline} {partition.key} is busy; try again"
        )
