"""Prometheus metrics of the operator (SPEC §6), served on ``:9102/metrics``.

Created once per operator run by ``operator.runner`` (its own registry, so tests can start many
operators in one process) and updated by the reconciler and the database mirror. Gauges of work
items by state are computed at scrape time from the operator's in-memory view of the cluster, so
they are never stale and never double-counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from market_spine.core.states import WorkState

# (domain, state) -> count, from the operator's cache of SpineWorkItems.
StateCounts = Callable[[], Mapping[tuple[str, WorkState], int]]

JOB_DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf"))


class _WorkItemCollector(Collector):
    def __init__(self, counts: StateCounts, domains: Callable[[], Iterable[str]]) -> None:
        self._counts = counts
        self._domains = domains

    def collect(self) -> Iterable[Any]:
        counts = self._counts()
        domains = set(self._domains()) | {domain for domain, _ in counts}
        by_state = GaugeMetricFamily(
            "market_spine_work_items", "SpineWorkItems by domain and state.", labels=["domain", "state"]
        )
        failed = GaugeMetricFamily(
            "market_spine_failed_work", "Work items stuck in FAILED (they need a human).", labels=["domain"]
        )
        for domain in sorted(domains):
            for state in WorkState:
                by_state.add_metric([domain, state.value], counts.get((domain, state), 0))
            failed.add_metric([domain], counts.get((domain, WorkState.FAILED), 0))
        yield by_state
        yield failed


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.attempts = Counter(
            "market_spine_attempts", "Attempts started (one Job each).", ["domain", "pipeline"], registry=r
        )
        self.retries = Counter(
            "market_spine_retries",
            "Failed attempts that were scheduled for a retry.",
            ["domain", "pipeline"],
            registry=r,
        )
        self.admin_retries = Counter(
            "market_spine_admin_retries",
            "Items re-opened (FAILED, COMPLETE or CANCELLED back to PENDING): admin retries and chain re-runs.",
            ["domain"],
            registry=r,
        )
        self.transitions = Counter(
            "market_spine_transitions", "State transitions of work items.", ["domain", "to_state"], registry=r
        )
        self.job_duration = Histogram(
            "market_spine_job_duration_seconds",
            "Duration of finished attempts, from Job creation to the outcome.",
            ["pipeline", "outcome"],
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.reconciles = Counter(
            "market_spine_reconciles",
            "Decisions made about work items (watch events that changed nothing are not counted).",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "market_spine_reconcile_errors", "Reconciliations that failed and were retried.", ["kind"], registry=r
        )
        self.adopted_jobs = Counter(
            "market_spine_adopted_jobs", "Job creations answered 409 AlreadyExists and adopted.", registry=r
        )
        self.status_conflicts = Counter(
            "market_spine_status_conflicts", "Status writes refused because the object had changed.", registry=r
        )
        self.db_pending = Gauge(
            "market_spine_db_sync_pending", "Work-item changes waiting to be written to PostgreSQL.", registry=r
        )
        self.db_up = Gauge("market_spine_db_up", "1 if the last write to PostgreSQL succeeded, else 0.", registry=r)
        self.db_sync_errors = Counter(
            "market_spine_db_sync_errors", "Failed attempts to write the mirror to PostgreSQL.", registry=r
        )
        # Set by `spine doctor --format prometheus` (textfile) or by a gap probe given to the runner.
        self.partition_gaps = Gauge(
            "market_spine_partition_gaps", "Expected partitions missing from core_manifest.", ["domain"], registry=r
        )
        self.db_up.set(1)

    def watch_work_items(self, counts: StateCounts, domains: Callable[[], Iterable[str]]) -> None:
        self.registry.register(_WorkItemCollector(counts, domains))

    def serve(self, port: int, host: str = "0.0.0.0") -> Callable[[], None]:
        """Start the /metrics HTTP server; return a function that stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
