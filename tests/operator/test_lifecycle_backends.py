"""One lifecycle, two backends: the same event sequences fed to the local queue and worker and to the
operator end in the same states.

Each sequence is a list of steps (enqueue, an attempt starts, succeeds or fails, a user retries,
cancels, wakes or dismisses) played by a driver per backend:

- local: ``LocalQueue`` and a ``Worker`` whose stage waits for the test to say how it ends, on a
  real PostgreSQL. A success writes the stage's manifest row through the attempt's fenced engine,
  as the real stages do, so the attempt ends inside that transaction.
- kubernetes: the real operator in-process (``tests/operator/harness.py``, with its FakeClock) on
  the test's Kubernetes API; the test plays the kubelet: a success is the pod exiting 0 with the
  capture in its termination message, a failure exits 5 (retryable) or 4 (not).

After the steps that both backends settle deterministically, ``expect`` compares the item's state,
attempt count, reason and the capture its params read.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import pytest
from sqlalchemy import Engine

from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE, PIPELINE_STAGE
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db import workitems as repo
from market_spine.errors import InputFileError, SourceUnavailable
from market_spine.kube import client as kube
from market_spine.kube.workitems import KubernetesQueue
from market_spine.pipelines.manifest import upsert_manifest
from market_spine.pipelines.registry import StageResult
from market_spine.services.queue import LocalQueue
from market_spine.services.worker import Worker
from tests.operator.conftest import StartOperator, operator_settings
from tests.operator.harness import FakeClock, JobController, Namespace, OperatorProcess, wait_for

WEEK = date(2025, 11, 10)
PARTITION = FinraPartition(week=WEEK, tier=Tier.OTC)


def spec(pipeline: str = INGEST, *, chain: bool = False, max_attempts: int = 3) -> WorkItemSpec:
    params = {"source": "finra-api"} if pipeline == INGEST else {}
    return WorkItemSpec(
        pipeline=pipeline,
        partition=PARTITION,
        params=params,
        chain=chain,
        max_attempts=max_attempts,
        retry={"backoffSeconds": 60},  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Snapshot:
    state: str
    attempts: int
    reason: str | None
    reads: str | None  # params.capture_id: the capture a downstream stage reads


class Driver(Protocol):
    clock: FakeClock

    def enqueue(self, item: WorkItemSpec) -> None: ...
    def start(self, pipeline: str) -> None: ...
    def succeed(self, pipeline: str, capture: str) -> bool:
        """The running attempt reports success with ``capture``; False if the backend had already
        stopped it so that no result could arrive (the operator deleted its Job)."""
        ...

    def fail(self, pipeline: str, *, retryable: bool = True) -> None: ...
    def request(self, verb: str, pipeline: str) -> None: ...
    def snapshot(self, pipeline: str) -> Snapshot | None: ...


class QueueDriver:
    """What both drivers do the same way: enqueue and the ``spine work`` verbs, through the queue
    the CLI would use on that backend."""

    queue: LocalQueue | KubernetesQueue

    def enqueue(self, item: WorkItemSpec) -> None:
        self.queue.enqueue(item)

    def request(self, verb: str, pipeline: str) -> None:
        if verb == "dismiss":
            self.queue.dismiss(pipeline, PARTITION, "accepted")
        else:
            getattr(self.queue, verb)(pipeline, PARTITION)


# --- the local backend --------------------------------------------------------------------


class LocalDriver(QueueDriver):
    def __init__(self, engine: Engine, clock: FakeClock) -> None:
        self.engine = engine
        self.clock = clock
        self.queue = LocalQueue(engine, clock)
        self.orders: dict[str, queue.Queue[tuple[str, Any]]] = {}
        self.runs: dict[str, threading.Thread] = {}
        self.worker = Worker(engine, clock, worker_id="local-driver", stage=self._stage)

    def _stage(self, engine: Engine, record: repo.WorkItemRecord, execution: str, now: Any) -> StageResult:
        order, value = self.orders.setdefault(record.pipeline, queue.Queue()).get(timeout=60)
        if order == "fail":
            raise SourceUnavailable("FINRA API is unavailable") if value else InputFileError("bad header")
        stage = PIPELINE_STAGE[record.pipeline]
        with engine.begin() as conn:  # the stage's data transaction: the fence ends the attempt in it
            upsert_manifest(
                conn,
                stage=stage,
                week=WEEK,
                tier=Tier.OTC,
                row_count=1,
                capture_id=value,
                execution_id=execution,
                updated_at=now,
            )
        return StageResult(stage, value, 1)

    def start(self, pipeline: str) -> None:
        run = threading.Thread(target=self.worker.run_once, daemon=True)
        run.start()
        self.runs[pipeline] = run
        wait_for(lambda: (s := self.snapshot(pipeline)) is not None and s.state == "RUNNING", what=f"{pipeline} to run")

    def _finish(self, pipeline: str, order: tuple[str, Any]) -> None:
        self.orders.setdefault(pipeline, queue.Queue()).put(order)
        run = self.runs.pop(pipeline)
        run.join(60)
        assert not run.is_alive()

    def succeed(self, pipeline: str, capture: str) -> bool:
        self._finish(pipeline, ("ok", capture))  # a worker's attempt always returns its result
        return True

    def fail(self, pipeline: str, *, retryable: bool = True) -> None:
        self._finish(pipeline, ("fail", retryable))

    def snapshot(self, pipeline: str) -> Snapshot | None:
        with self.engine.connect() as conn:
            record = repo.get_by_key(conn, "finra.otc_transparency", pipeline, PARTITION.key)
        if record is None:
            return None
        return Snapshot(record.state.value, record.attempt_count, record.state_reason, record.params.get("capture_id"))


# --- the kubernetes backend ---------------------------------------------------------------


class OperatorDriver(QueueDriver):
    def __init__(
        self,
        ns: Namespace,
        jobs: JobController,
        clock: FakeClock,
        kube_queue: KubernetesQueue,
        operator: OperatorProcess,
    ) -> None:
        self.operator = operator
        self.ns = ns
        self.jobs = jobs
        self.clock = clock
        self.queue = kube_queue
        self.running: dict[str, str] = {}
        self.used: set[str] = set()  # Jobs whose attempt the test already played

    def start(self, pipeline: str) -> None:
        name = spec(pipeline).name

        def new_attempt() -> str | None:
            status = self.ns.status(name)
            fresh = status.state is not None and status.state.value == "RUNNING" and status.current_job not in self.used
            return status.current_job if fresh else None

        job: str = wait_for(new_attempt, 30, f"a new attempt of {name}")
        self.used.add(job)
        self.jobs.start(job)
        self.running[pipeline] = job

    def succeed(self, pipeline: str, capture: str) -> bool:
        job = self.running.pop(pipeline)
        if not self._exists(job):  # deleted by the operator (a cancel): its pod can report nothing
            return False
        self.jobs.succeed(job, message=json.dumps({"capture_id": capture}))
        self._settled(pipeline, job)
        return True

    def fail(self, pipeline: str, *, retryable: bool = True) -> None:
        job = self.running.pop(pipeline)
        self.jobs.fail(job, message="spine: error: boom", exit_code=5 if retryable else InputFileError.exit_code)
        self._settled(pipeline, job)

    def _settled(self, pipeline: str, job: str) -> None:
        """Wait until the operator has recorded how the Job's attempt ended, as the local worker
        has by the time its attempt returns."""

        def ended() -> bool:
            history = self.ns.status(spec(pipeline).name).history
            return any(r.job == job and r.outcome.value != "RUNNING" for r in history)

        wait_for(ended, 30, f"the operator to record the end of {job}")

    def _exists(self, job: str) -> bool:
        try:
            found = self.ns.job(job)
        except kube.NotFoundError:
            return False
        return not (found["metadata"].get("deletionTimestamp"))

    def snapshot(self, pipeline: str) -> Snapshot | None:
        try:
            obj = self.ns.item(spec(pipeline).name)
        except Exception:
            return None
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"].get("generation") or not status.get("state"):
            return None  # the operator has not caught up with the spec yet
        params = (obj.get("spec") or {}).get("params") or {}
        return Snapshot(status["state"], status.get("attempts", 0), status.get("reason"), params.get("capture_id"))


@pytest.fixture(params=["local", "kubernetes"])
def driver(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Driver]:
    if request.param == "local":
        yield LocalDriver(request.getfixturevalue("engine"), clock)
        return
    start_operator: StartOperator = request.getfixturevalue("start_operator")
    ns: Namespace = request.getfixturevalue("ns")
    operator = start_operator()
    settings = operator_settings(ns, request.getfixturevalue("database_url"))
    yield OperatorDriver(ns, request.getfixturevalue("jobs"), clock, KubernetesQueue(settings, clock=clock), operator)


def expect(
    driver: Driver, pipeline: str, state: str, attempts: int, reason: str | None, reads: str | None = None
) -> None:
    wanted = Snapshot(state, attempts, reason, reads)
    wait_for(lambda: driver.snapshot(pipeline) == wanted, 30, f"{pipeline} to be {wanted}")


def attempt(driver: Driver, pipeline: str, capture: str) -> None:
    """An attempt of ``pipeline`` starts and succeeds, having written ``capture``."""
    driver.start(pipeline)
    assert driver.succeed(pipeline, capture), f"{pipeline}: its Job was gone before it could report"


def failure(driver: Driver) -> str:
    """The reason of a failed attempt: the operator knows a failed Job, the local worker the error."""
    return "JobFailed" if isinstance(driver, OperatorDriver) else "SourceUnavailable"


def test_a_failure_waits_for_the_backoff_then_the_next_attempt_completes(driver: Driver) -> None:
    driver.enqueue(spec())
    driver.start(INGEST)
    driver.fail(INGEST)
    expect(driver, INGEST, "RETRY_WAIT", 1, failure(driver))
    driver.clock.advance(60)
    attempt(driver, INGEST, "cap-1")
    expect(driver, INGEST, "COMPLETE", 2, None)


def test_cancel_while_running_stays_cancelled_whatever_the_attempt_reports_later(driver: Driver) -> None:
    driver.enqueue(spec())
    driver.start(INGEST)
    driver.request("cancel", INGEST)
    expect(driver, INGEST, "CANCELLED", 1, "Cancelled")
    # The stopped attempt's late result is not kept: the local worker's arrives and is rolled
    # back by the fence; on Kubernetes the cancel deleted the Job, so its pod reports nothing.
    delivered = driver.succeed(INGEST, "cap-late")
    assert delivered is isinstance(driver, LocalDriver)
    expect(driver, INGEST, "CANCELLED", 1, "Cancelled")
    driver.request("retry", INGEST)  # re-opened, with a fresh budget
    attempt(driver, INGEST, "cap-1")
    expect(driver, INGEST, "COMPLETE", 1, None)


def test_wake_runs_a_waiting_item_now_without_resetting_its_attempts(driver: Driver) -> None:
    driver.enqueue(spec())
    driver.start(INGEST)
    driver.fail(INGEST)
    driver.request("wake", INGEST)
    attempt(driver, INGEST, "cap-1")
    expect(driver, INGEST, "COMPLETE", 2, None)


def test_a_dismissed_failure_is_cancelled_with_its_reason_and_a_retry_reopens_it(driver: Driver) -> None:
    driver.enqueue(spec(max_attempts=1))
    driver.start(INGEST)
    driver.fail(INGEST, retryable=False)
    expect(driver, INGEST, "FAILED", 1, "JobFailed" if isinstance(driver, OperatorDriver) else "InputFileError")
    driver.request("dismiss", INGEST)
    expect(driver, INGEST, "CANCELLED", 1, "Dismissed")
    driver.request("retry", INGEST)
    attempt(driver, INGEST, "cap-1")
    expect(driver, INGEST, "COMPLETE", 1, None)


def _run_chain(driver: Driver, capture: str) -> None:
    for pipeline in (NORMALIZE, COMPUTE):
        attempt(driver, pipeline, capture)
        expect(driver, pipeline, "COMPLETE", 1, None, reads=capture)


def test_a_restatement_reruns_every_finished_stage_on_the_new_capture(driver: Driver) -> None:
    driver.enqueue(spec(chain=True))
    attempt(driver, INGEST, "cap-1")
    _run_chain(driver, "cap-1")
    driver.request("retry", INGEST)  # FINRA corrected the week: ingest it again
    attempt(driver, INGEST, "cap-2")
    expect(driver, INGEST, "COMPLETE", 1, None)
    _run_chain(driver, "cap-2")
    if isinstance(driver, OperatorDriver):  # re-opened: the ingest a person retried, and the two stages after it
        assert driver.operator.metric("market_spine_admin_retries_total", {"domain": DOMAIN}) == 3


def test_a_restatement_while_the_next_stage_runs_reruns_it_when_it_finishes(driver: Driver) -> None:
    driver.enqueue(spec(chain=True))
    attempt(driver, INGEST, "cap-1")
    driver.start(NORMALIZE)
    driver.request("retry", INGEST)
    attempt(driver, INGEST, "cap-2")
    expect(driver, NORMALIZE, "RUNNING", 1, None, reads="cap-2")  # pointed at the new run, still running
    assert driver.succeed(NORMALIZE, "cap-1")  # it finishes on the old capture: stale, so it runs again
    attempt(driver, NORMALIZE, "cap-2")
    expect(driver, NORMALIZE, "COMPLETE", 1, None, reads="cap-2")
    attempt(driver, COMPUTE, "cap-2")
    expect(driver, COMPUTE, "COMPLETE", 1, None, reads="cap-2")
