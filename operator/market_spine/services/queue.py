"""The local work queue: ``spine work enqueue|backfill|list|retry|cancel`` on PostgreSQL.

Called by the CLI when ``SPINE_BACKEND=local`` (the default). The Kubernetes backend
(``kube.workitems.KubernetesQueue``) offers the same methods over SpineWorkItems, so the CLI does
not care which one it holds. Every state change asks ``core.states.transition`` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Engine

from market_spine.core.partitions import DOMAIN
from market_spine.core.states import Event, IllegalTransition, WorkState, transition
from market_spine.core.workitem import EnqueueResult, FinraPartition, WorkItemSpec, enqueue_each
from market_spine.db import workitems as repo
from market_spine.errors import NotFound, UsageError

Clock = Callable[[], datetime]


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
        """Admin retry: FAILED (or COMPLETE, for a deliberate re-run) → PENDING with a fresh budget."""
        return self._apply(pipeline, partition, Event.ADMIN_RETRY)

    def cancel(self, pipeline: str, partition: FinraPartition) -> repo.WorkItemRecord:
        return self._apply(pipeline, partition, Event.CANCEL)

    def _apply(self, pipeline: str, partition: FinraPartition, event: Event) -> repo.WorkItemRecord:
        now = self.clock()
        with self.engine.begin() as conn:
            found = repo.get_by_key(conn, DOMAIN, pipeline, partition.key)
            if found is None:
                raise NotFound(f"no work item for {pipeline} {partition.key}")
            record = repo.get_by_id(conn, found.id, for_update=True)
            assert record is not None
            try:
                state = transition(record.state, event)
            except IllegalTransition as exc:
                raise UsageError(str(exc)) from None
            values: dict[str, object] = {"state": state, "updated_at": now}
            if event is Event.ADMIN_RETRY:
                values |= {
                    "attempt_count": 0,
                    "next_attempt_at": None,
                    "desired_at": now,
                    "completed_at": None,
                    "current_execution_id": None,
                    "locked_by": None,
                }
            elif state is WorkState.CANCELLED:
                values |= {"completed_at": now, "next_attempt_at": None}
            repo.update_item(conn, record.id, **values)
            updated = repo.get_by_id(conn, record.id)
        assert updated is not None
        return updated
