"""Faults: the operator killed mid-attempt, PostgreSQL down, duplicate watch events, a 409 on Job
creation, two operators at once. Each ends with one Job per attempt, a consistent status, and a
database that caught up with every transition."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from market_spine.config import Settings
from market_spine.core.reconcile import execution_id
from market_spine.core.resource import WorkItemResourceSpec
from market_spine.core.states import WorkState
from market_spine.core.workitem import WorkItemSpec
from market_spine.kube import client as kube
from market_spine.kube.jobs import build_job
from market_spine.operator.reconciler import ReconcilerOptions
from tests.operator.checks import consistent, mirrored
from tests.operator.conftest import StartOperator
from tests.operator.harness import T0, FakeClock, JobController, Namespace, OperatorProcess, wait_for

INGEST = "finra.otc_transparency.ingest_week"


def spec(week: str = "2025-12-15", **extra: object) -> WorkItemSpec:
    data = {"pipeline": INGEST, "partition": {"week": week, "tier": "OTC"}, "params": {"source": "finra-api"}}
    return WorkItemSpec.model_validate(data | extra)


def _precreate_job(ns: Namespace, name: str, settings: Settings, attempt: int = 1) -> str:
    """Create the Job exactly as the operator creates it for ``attempt``: the state a crash leaves
    between the Job creation and the status write."""
    item = ns.item(name)
    job = build_job(
        work_item=name,
        namespace=ns.name,
        uid=item["metadata"]["uid"],
        spec=WorkItemResourceSpec.model_validate(item["spec"]),
        attempt=attempt,
        name=f"{name}-a{attempt}",
        execution_id=execution_id(item["metadata"]["uid"], attempt),
        settings=settings,
    )
    ns.api.create(kube.job_path(ns.name), job)
    return str(job["metadata"]["name"])


def test_operator_stopped_between_job_creation_and_status_write_then_restarted(
    ns: Namespace, start_operator: StartOperator, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    first = start_operator()
    name = ns.enqueue(spec(desiredAt=(T0 + timedelta(minutes=5)).isoformat()))
    ns.wait_state(name, "PENDING")
    first.stop()
    # What a crash right after `create Job` leaves behind: the Job, and a status still PENDING.
    job = _precreate_job(ns, name, first.settings)
    clock.advance(300)
    second = start_operator()
    status = ns.wait_state(name, "RUNNING")
    assert status.current_job == job and status.total_attempts == 1
    assert [j["metadata"]["name"] for j in ns.jobs(name)] == [job]  # adopted, not duplicated
    assert second.metric("market_spine_adopted_jobs_total") == 1
    jobs.succeed(job)
    ns.wait_state(name, "COMPLETE")
    consistent(ns, name, engine)


def test_a_409_on_job_create_adopts_the_existing_job(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    name = ns.enqueue(spec(desiredAt=(T0 + timedelta(minutes=1)).isoformat()))
    ns.wait_state(name, "PENDING")
    job = _precreate_job(ns, name, operator.settings)
    clock.advance(60)
    status = ns.wait_state(name, "RUNNING")
    assert status.current_job == job
    assert len(ns.jobs(name)) == 1
    assert operator.metric("market_spine_adopted_jobs_total") == 1
    jobs.fail(job, message="boom", exit_code=1)
    ns.wait_state(name, "RETRY_WAIT")
    consistent(ns, name, engine)


def test_the_same_watch_event_twice_changes_nothing(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, engine: Engine
) -> None:
    name = ns.enqueue(spec(retry={"backoffSeconds": 60}))
    ns.wait_state(name, "RUNNING")
    jobs.fail(f"{name}-a1", message="boom", exit_code=1)
    before = ns.wait_state(name, "RETRY_WAIT")
    events = len(ns.event_reasons(name, 2))
    version = ns.item(name)["metadata"]["resourceVersion"]
    assert operator.runtime is not None
    reconciler = operator.runtime.reconciler
    seen, decisions = reconciler.events_seen, operator.metric("market_spine_reconciles_total")
    for _ in range(2):
        if ns.cluster.emulator is not None:  # the very same event, again, down the watch stream
            ns.cluster.emulator.call(ns.cluster.emulator.emulator.redeliver("batch/v1/jobs", ns.name, f"{name}-a1"))
            ns.cluster.emulator.call(
                ns.cluster.emulator.emulator.redeliver("spine.marketspine.io/v1/spineworkitems", ns.name, name)
            )
        else:  # a real API server never repeats an event by itself: touch the Job (same state) instead
            ns.api.merge_patch(kube.job_path(ns.name, f"{name}-a1"), {"metadata": {"annotations": {"touch": str(_)}}})
    expected = 4 if ns.cluster.emulator is not None else 2
    wait_for(lambda: reconciler.events_seen >= seen + expected, what="the repeated events to arrive")
    wait_for(lambda: not len(reconciler.queue), what="an idle queue")
    assert operator.metric("market_spine_reconciles_total") == decisions  # nothing new: not even a decision
    assert ns.item(name)["metadata"]["resourceVersion"] == version  # no write at all
    assert ns.status(name) == before
    assert len(ns.events(name)) == events
    assert ns.status(name).attempts == 1
    consistent(ns, name, engine)


@contextmanager
def database_down(pg_admin_url: str, database_url: str) -> Iterator[None]:
    """Make the test database refuse connections (and drop the open ones), like a server outage."""
    name = make_url(database_url).database
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_postgresql_down_for_two_transitions_then_back(
    ns: Namespace,
    operator: OperatorProcess,
    jobs: JobController,
    clock: FakeClock,
    engine: Engine,
    pg_admin_url: str,
    database_url: str,
) -> None:
    name = ns.enqueue(spec(retry={"backoffSeconds": 60}))
    ns.wait_state(name, "RUNNING")
    mirrored(ns, name, engine)
    assert operator.runtime is not None
    sync = operator.runtime.dbsync
    with database_down(pg_admin_url, database_url):
        jobs.fail(f"{name}-a1", message="SourceUnavailable: 503", exit_code=5)  # transition 1: RETRY_WAIT
        ns.wait_state(name, "RETRY_WAIT")
        clock.advance(60)  # transition 2 (and 3): PENDING → RUNNING, a new Job
        ns.wait_state(name, "RUNNING", attempts=2)
        wait_for(lambda: not sync.up, what="the mirror to notice the outage")
        assert sync.pending() == 1  # the latest state of the item, kept in memory
        assert operator.metric("market_spine_db_up") == 0
        assert len(ns.jobs(name)) == 2  # Kubernetes reconciliation went on
    row = mirrored(ns, name, engine)  # the mirror catches up: state, attempts, both executions
    assert row["state"] == "RUNNING" and row["attempt_count"] == 2
    wait_for(lambda: sync.up and sync.pending() == 0, what="the outbox to drain")
    jobs.succeed(f"{name}-a2")
    ns.wait_state(name, "COMPLETE")
    consistent(ns, name, engine)
    assert operator.metric("market_spine_db_sync_errors_total") >= 1


def test_a_restart_with_the_database_down_is_repaired_by_the_resync(
    ns: Namespace,
    start_operator: StartOperator,
    jobs: JobController,
    engine: Engine,
    pg_admin_url: str,
    database_url: str,
) -> None:
    first = start_operator()
    name = ns.enqueue(spec())
    ns.wait_state(name, "RUNNING")
    mirrored(ns, name, engine)
    with database_down(pg_admin_url, database_url):
        jobs.succeed(f"{name}-a1")
        ns.wait_state(name, "COMPLETE")
        first.stop()  # the in-memory outbox is lost with the process
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM core_work_items")).scalar() == "RUNNING"
    start_operator()  # the start-up resync rewrites the mirror from the objects' status
    row = mirrored(ns, name, engine)
    assert row["state"] == "COMPLETE"


def test_two_operators_at_once_still_make_one_job_per_attempt(
    ns: Namespace, start_operator: StartOperator, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    # Peering normally pauses all but one replica; even without it, every status write is
    # conditional on resourceVersion and every Job name is deterministic.
    options = ReconcilerOptions(workers=4, tick=0.02)
    a = start_operator(options=options)
    b = start_operator(options=ReconcilerOptions(workers=4, tick=0.02))
    names = [ns.enqueue(spec(week=w, retry={"backoffSeconds": 30})) for w in ("2025-12-01", "2025-12-08", "2025-12-15")]
    for name in names:
        ns.wait_state(name, "RUNNING")
        jobs.fail(f"{name}-a1", message="boom", exit_code=1)
    for name in names:
        ns.wait_state(name, "RETRY_WAIT")
    clock.advance(30)
    for name in names:
        ns.wait_state(name, "RUNNING", attempts=2)
        jobs.succeed(f"{name}-a2")
    for name in names:
        status = ns.wait_state(name, "COMPLETE")
        assert status.total_attempts == 2
        assert ns.event_reasons(name, 5).count("Started") == 2
        consistent(ns, name, engine)
    conflicts = a.metric("market_spine_status_conflicts_total") + b.metric("market_spine_status_conflicts_total")
    assert conflicts >= 0  # both may have raced; the API server let exactly one write win each time
    assert a.runtime is not None and b.runtime is not None
    assert WorkState.COMPLETE
