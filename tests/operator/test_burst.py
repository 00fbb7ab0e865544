"""A burst of 500 work items through the real operator: every one gets exactly one Job and
completes, with no reconcile error, and the database mirror ends with 500 COMPLETE rows."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, text

from market_spine.core.partitions import Tier
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.kube.workitems import KubernetesQueue
from market_spine.operator.reconciler import ReconcilerOptions
from tests.operator.conftest import StartOperator
from tests.operator.harness import JobController, Namespace, wait_for

BURST = 500


@pytest.mark.slow
def test_a_burst_of_500_work_items_completes_with_no_errors(
    ns: Namespace, start_operator: StartOperator, jobs: JobController, engine: Engine
) -> None:
    operator = start_operator(
        max_running=BURST, max_running_per_pipeline=BURST, options=ReconcilerOptions(workers=8, tick=0.05)
    )
    weeks = [date(2025, 12, 15) - timedelta(weeks=n) for n in range(BURST // 3 + 1)]
    specs = [
        WorkItemSpec(
            pipeline="finra.otc_transparency.ingest_week",
            partition=FinraPartition(week=w, tier=t),
            params={"source": "finra-api"},
        )
        for w in weeks
        for t in Tier
    ][:BURST]
    queue = KubernetesQueue(operator.settings)
    started = time.monotonic()
    assert sum(r.created for r in queue.backfill(specs)) == BURST

    jobs.succeed_all(BURST)
    wait_for(
        lambda: all((o.get("status") or {}).get("state") == "COMPLETE" for o in ns.items()),
        timeout=120,
        what="500 COMPLETE work items",
        interval=0.2,
    )
    elapsed = time.monotonic() - started
    assert len(ns.jobs()) == BURST
    assert (
        operator.metric(
            "market_spine_attempts_total",
            {"domain": "finra.otc_transparency", "pipeline": "finra.otc_transparency.ingest_week"},
        )
        == BURST
    )
    assert operator.runtime is not None
    errors = sum(
        s.value
        for m in operator.runtime.metrics.registry.collect()
        for s in m.samples
        if s.name == "market_spine_reconcile_errors_total"
    )
    assert errors == 0

    def mirrored() -> bool:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM core_work_items GROUP BY state")).all()
            executions = conn.execute(text("SELECT count(*) FROM core_executions WHERE outcome = 'SUCCEEDED'")).scalar()
        return dict(rows) == {"COMPLETE": BURST} and executions == BURST

    wait_for(mirrored, timeout=60, what="the mirror to hold 500 COMPLETE rows")
    print(f"burst of {BURST}: {elapsed:.1f}s")
