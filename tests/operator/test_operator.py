"""The real operator, in-process, against a Kubernetes API (the emulator, or SPINE_TEST_KUBECONFIG)
and a real PostgreSQL: Jobs, retries, timeouts, cancel, admin retry, chains, limits, Events."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from market_spine.core.reconcile import JOB_DELETED, POD_START_TIMEOUT
from market_spine.core.resource import ANNOTATION_UPSTREAM_EXECUTION, ConditionType, manifest
from market_spine.core.states import WorkState
from market_spine.core.workitem import WorkItemSpec
from market_spine.kube.jobs import CONTAINER
from tests.operator.checks import consistent, mirrored
from tests.operator.conftest import StartOperator
from tests.operator.harness import T0, FakeClock, JobController, Namespace, OperatorProcess, wait_for

INGEST = "finra.otc_transparency.ingest_week"
NORMALIZE = "finra.otc_transparency.normalize_week"
COMPUTE = "finra.otc_transparency.compute_week"


def spec(pipeline: str = INGEST, week: str = "2025-12-15", tier: str = "OTC", **extra: Any) -> WorkItemSpec:
    source = {"params": {"source": "finra-api"}} if pipeline == INGEST else {}
    data = {"pipeline": pipeline, "partition": {"week": week, "tier": tier}} | source | extra
    return WorkItemSpec.model_validate(data)


def settle(seconds: float = 0.3) -> None:
    """Give the operator time to (not) react, for assertions that something does NOT happen."""
    time.sleep(seconds)


def test_a_work_item_runs_as_one_job_and_completes(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, engine: Engine
) -> None:
    name = ns.enqueue(spec(params={"file": "/data/w.csv", "capture_date": "2025-12-16"}))
    status = ns.wait_state(name, "RUNNING")
    job = ns.wait_job(f"{name}-a1")

    # The Job: owned by the work item, one pod, no Kubernetes retries, the pipeline's own CLI.
    meta, job_spec = job["metadata"], job["spec"]
    (owner,) = meta["ownerReferences"]
    item = ns.item(name)
    assert (owner["kind"], owner["name"], owner["uid"]) == ("SpineWorkItem", name, item["metadata"]["uid"])
    assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
    assert meta["labels"]["spine.marketspine.io/work-item"] == name
    assert meta["labels"]["spine.marketspine.io/attempt"] == "1"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "market-spine-operator"
    assert job_spec["backoffLimit"] == 0
    assert job_spec["podReplacementPolicy"] == "Failed"
    assert job_spec["activeDeadlineSeconds"] == 3600
    assert job_spec["ttlSecondsAfterFinished"] == 86400
    pod = job_spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["name"] == CONTAINER
    assert container["image"] == "registry.example/market-spine:test"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["command"] == [
        "spine", "run", INGEST, "--week", "2025-12-15", "--tier", "OTC",
        "--execution-id", status.current_execution_id,
        "--capture-date", "2025-12-16", "--file", "/data/w.csv",
    ]  # fmt: skip
    secret = next(e for e in container["env"] if e["name"] == "SPINE_DATABASE_URL")
    assert secret["valueFrom"]["secretKeyRef"] == {"name": "market-spine-db", "key": "url"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}

    jobs.succeed(f"{name}-a1")
    status = ns.wait_state(name, "COMPLETE")
    assert status.attempts == 1 and status.completed_at == T0
    ready = status.condition(ConditionType.READY)
    assert ready is not None and ready.status.value == "True"
    assert ns.event_reasons(name, 2) == ["Started", "Completed"]
    consistent(ns, name, engine)


def test_a_failed_attempt_waits_for_its_backoff_then_runs_again(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    name = ns.enqueue(spec(retry={"backoffSeconds": 300}))
    ns.wait_state(name, "RUNNING")
    jobs.fail(f"{name}-a1", message="SourceUnavailable: FINRA API answered 503 3 times", exit_code=5)
    status = ns.wait_state(name, "RETRY_WAIT")
    assert status.next_attempt_at == T0 + timedelta(seconds=300)
    assert status.last_error == "exit code 5: SourceUnavailable: FINRA API answered 503 3 times"
    mirrored(ns, name, engine)

    clock.advance(299)
    settle()
    assert ns.status(name).state is WorkState.RETRY_WAIT
    clock.advance(1)
    ns.wait_state(name, "RUNNING", attempts=2)
    jobs.succeed(f"{name}-a2")
    status = ns.wait_state(name, "COMPLETE")
    assert [(r.attempt, r.outcome.value) for r in status.history] == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert ns.event_reasons(name, 5) == ["Started", "AttemptFailed", "BackoffElapsed", "Started", "Completed"]
    warnings = [e for e in ns.events(name) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["AttemptFailed"]
    consistent(ns, name, engine)
    assert operator.metric("market_spine_retries_total", {"domain": "finra.otc_transparency", "pipeline": INGEST}) == 1
    assert operator.metric("market_spine_attempts_total", {"domain": "finra.otc_transparency", "pipeline": INGEST}) == 2


def test_a_pod_that_never_starts_fails_the_attempt_and_its_job_is_deleted(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    name = ns.enqueue(spec(retry={"backoffSeconds": 60}))
    ns.wait_state(name, "RUNNING")
    clock.advance(600)  # job_start_timeout_seconds: the pod never got scheduled
    status = ns.wait_state(name, "RETRY_WAIT")
    assert status.history[-1].reason == POD_START_TIMEOUT
    assert "no pod of Job" in (status.last_error or "")
    wait_for(lambda: not ns.jobs(name), what="the stuck Job to be deleted")

    clock.advance(60)
    ns.wait_state(name, "RUNNING", attempts=2)
    jobs.succeed(f"{name}-a2")
    ns.wait_state(name, "COMPLETE")
    consistent(ns, name, engine)


def test_an_attempt_past_its_active_deadline_fails_and_is_retried(
    ns: Namespace, start_operator: StartOperator, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    # A short deadline, so that on a real cluster the Job controller itself ends the attempt.
    start_operator(default_active_deadline_seconds=3)
    name = ns.enqueue(spec(retry={"backoffSeconds": 60}))
    ns.wait_state(name, "RUNNING")
    assert ns.job(f"{name}-a1")["spec"]["activeDeadlineSeconds"] == 3
    jobs.start(f"{name}-a1")
    jobs.deadline_exceeded(f"{name}-a1")
    status = ns.wait_state(name, "RETRY_WAIT")
    assert status.history[-1].reason == "DeadlineExceeded"
    assert "exceeded activeDeadlineSeconds (3s)" in (status.last_error or "")
    clock.advance(60)
    ns.wait_state(name, "RUNNING", attempts=2)
    consistent(ns, name, engine)


def test_the_job_deleted_while_running_counts_as_a_failed_attempt(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, clock: FakeClock, engine: Engine
) -> None:
    name = ns.enqueue(spec(retry={"backoffSeconds": 30}))
    ns.wait_state(name, "RUNNING")
    jobs.start(f"{name}-a1")
    ns.api.delete(f"/apis/batch/v1/namespaces/{ns.name}/jobs/{name}-a1")
    status = ns.wait_state(name, "RETRY_WAIT")
    assert status.history[-1].reason == JOB_DELETED
    assert status.last_error == f"Job {name}-a1 was deleted before it finished"
    clock.advance(30)
    ns.wait_state(name, "RUNNING", attempts=2)
    jobs.succeed(f"{name}-a2")
    status = ns.wait_state(name, "COMPLETE")
    assert [j["metadata"]["name"] for j in ns.jobs(name)] == [f"{name}-a2"]
    consistent(ns, name, engine)


def test_cancel_stops_the_running_job(ns: Namespace, operator: OperatorProcess, engine: Engine) -> None:
    name = ns.enqueue(spec())
    ns.wait_state(name, "RUNNING")
    ns.patch_spec(name, {"cancel": True})
    status = ns.wait_state(name, "CANCELLED")
    assert status.history[-1].outcome.value == "CANCELLED"
    wait_for(lambda: not ns.jobs(name), what="the cancelled Job to be deleted")
    assert ns.event_reasons(name, 2)[-1] == "Cancelled"
    mirrored(ns, name, engine)


def test_admin_retry_from_failed_gives_a_fresh_budget_and_new_jobs(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, engine: Engine
) -> None:
    name = ns.enqueue(spec(maxAttempts=1))
    ns.wait_state(name, "RUNNING")
    jobs.fail(f"{name}-a1", message="UsageError: bad option", exit_code=2)
    status = ns.wait_state(name, "FAILED")
    assert status.attempts == 1
    failed = status.condition(ConditionType.FAILED)
    assert failed is not None and failed.status.value == "True"
    assert ns.event_reasons(name, 2)[-1] == "Failed"
    assert ns.events(name)[-1]["type"] == "Warning"
    assert "spine work retry" in ns.events(name)[-1]["message"]

    ns.patch_spec(name, {"retryRequest": 1})  # what `spine work retry` and kubectl do
    status = ns.wait_state(name, "RUNNING")
    assert (status.attempts, status.total_attempts, status.observed_retry_request) == (1, 2, 1)
    jobs.succeed(f"{name}-a2")
    ns.wait_state(name, "COMPLETE")
    assert "RetryRequested" in ns.event_reasons(name, 5)
    consistent(ns, name, engine)


def test_chain_creates_the_next_stages_and_a_restatement_reruns_them(
    ns: Namespace, operator: OperatorProcess, jobs: JobController, engine: Engine
) -> None:
    ingest = ns.enqueue(spec(chain=True, params={"file": "/data/monday.csv"}))
    ns.wait_state(ingest, "RUNNING")
    jobs.succeed(f"{ingest}-a1", message='{"capture_id": "finra.otc_transparency:OTC:2025-12-15:20251216"}')
    ns.wait_state(ingest, "COMPLETE")
    normalize = spec(NORMALIZE, chain=True).name
    status = ns.wait_state(normalize, "RUNNING")
    item = ns.item(normalize)
    assert item["spec"]["params"] == {"capture_id": "finra.otc_transparency:OTC:2025-12-15:20251216"}
    assert item["metadata"]["annotations"][ANNOTATION_UPSTREAM_EXECUTION] == ns.status(ingest).latest_execution_id
    jobs.succeed(status.current_job or "")
    ns.wait_state(normalize, "COMPLETE")
    compute = spec(COMPUTE).name
    jobs.succeed(ns.wait_state(compute, "RUNNING").current_job or "")
    ns.wait_state(compute, "COMPLETE")
    assert "Chained" in ns.event_reasons(ingest, 3) and "Chained" in ns.event_reasons(normalize, 3)

    # A restatement: Tuesday's file for the same week. Re-running ingest re-runs the chain.
    ns.patch_spec(ingest, {"params": {"file": "/data/tuesday.csv"}, "retryRequest": 1})
    jobs.succeed(
        ns.wait_state(ingest, "RUNNING", attempts=1).current_job or "",
        message='{"capture_id": "finra.otc_transparency:OTC:2025-12-15:20251217"}',
    )
    ns.wait_state(ingest, "COMPLETE")
    second = wait_for(lambda: ns.status(normalize).total_attempts == 2 and ns.status(normalize), what="re-run")
    assert ns.item(normalize)["spec"]["params"]["capture_id"].endswith(":20251217")
    jobs.succeed(ns.wait_state(normalize, "RUNNING").current_job or second.current_job or "")
    ns.wait_state(normalize, "COMPLETE")
    jobs.succeed(wait_for(lambda: ns.status(compute).total_attempts == 2 and ns.status(compute)).current_job or "")
    ns.wait_state(compute, "COMPLETE")
    assert len(ns.items()) == 3
    for name in (ingest, normalize, compute):
        consistent(ns, name, engine)


def test_concurrency_limits_and_priority_order(
    ns: Namespace, start_operator: StartOperator, jobs: JobController, clock: FakeClock
) -> None:
    later = (T0 + timedelta(seconds=10)).isoformat()
    start_operator(max_running=2, max_running_per_pipeline=1)
    # Everything becomes due at once, so the order is the operator's, not the creation order.
    low = ns.enqueue(spec(week="2025-12-01", priority=10, desiredAt=later))
    high = ns.enqueue(spec(week="2025-12-08", priority=500, desiredAt=later))
    other = ns.enqueue(spec(NORMALIZE, week="2025-12-01", priority=1, desiredAt=later))
    for name in (low, high, other):
        ns.wait_state(name, "PENDING")
    clock.advance(10)
    ns.wait_state(high, "RUNNING")
    ns.wait_state(other, "RUNNING")  # another pipeline's slot is free
    settle()
    status = ns.status(low)
    assert status.state is WorkState.PENDING
    waiting = status.condition(ConditionType.WAITING)
    assert waiting is not None and waiting.reason == "ConcurrencyLimit"
    jobs.succeed(f"{high}-a1")
    ns.wait_state(low, "RUNNING")


def test_an_unknown_pipeline_fails_once_with_a_warning_and_no_crash_loop(
    ns: Namespace, operator: OperatorProcess, engine: Engine
) -> None:
    name = ns.enqueue(spec("finra.otc_transparency.nope"))
    status = ns.wait_state(name, "FAILED")
    assert status.attempts == 0 and not ns.jobs(name)
    assert "unknown pipeline 'finra.otc_transparency.nope'" in (status.last_error or "")
    ns.event_reasons(name, 1)
    (event,) = ns.events(name)
    assert (event["type"], event["reason"]) == ("Warning", "UnknownPipeline")
    assert operator.runtime is not None
    operator.runtime.reconciler.resync()  # re-reconcile everything: nothing changes, nothing is posted
    ns.patch_spec(name, {"priority": 5})  # a new watch event for it
    settle()
    assert len(ns.events(name)) == 1
    assert ns.status(name).state is WorkState.FAILED
    assert operator.metric("market_spine_reconcile_errors_total", {"kind": "Exception"}) == 0
    mirrored(ns, name, engine)
    other = ns.enqueue(spec())  # and the operator goes on working
    ns.wait_state(other, "RUNNING")


def test_two_objects_for_one_partition_run_once(ns: Namespace, operator: OperatorProcess) -> None:
    first = ns.enqueue(spec(desiredAt=(T0.replace(year=2030)).isoformat()))
    ns.wait_state(first, "PENDING")
    body = manifest(spec(), ns.name)
    body["metadata"]["name"] = "hand-named-copy"
    ns.api.create(f"/apis/spine.marketspine.io/v1/namespaces/{ns.name}/spineworkitems", body)
    status = ns.wait_state("hand-named-copy", "FAILED")
    assert f"work item {first} already covers" in (status.last_error or "")
    assert ns.event_reasons("hand-named-copy", 1) == ["DuplicateWorkItem"]
    assert not ns.jobs("hand-named-copy")  # the canonical item is untouched and still waits for its time
    assert ns.status(first).state is WorkState.PENDING


def test_metrics_by_state(ns: Namespace, operator: OperatorProcess, jobs: JobController) -> None:
    done = ns.enqueue(spec())
    jobs.succeed(ns.wait_state(done, "RUNNING").current_job or "")
    ns.wait_state(done, "COMPLETE")
    bad = ns.enqueue(spec("finra.otc_transparency.nope", week="2025-12-08"))
    ns.wait_state(bad, "FAILED")
    labels = {"domain": "finra.otc_transparency"}
    wait_for(lambda: operator.metric("market_spine_failed_work", labels) == 1, what="failed_work gauge")
    assert operator.metric("market_spine_work_items", labels | {"state": "COMPLETE"}) == 1
    assert operator.metric("market_spine_work_items", labels | {"state": "RUNNING"}) == 0
    assert operator.metric("market_spine_job_duration_seconds_count", {"pipeline": INGEST, "outcome": "SUCCEEDED"}) == 1
