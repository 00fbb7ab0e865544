"""Fault injection on the local backend: real ``spine worker`` processes on a real PostgreSQL, killed
with ``kill -9``, stopped with SIGTERM, cut off by a database restart, cancelled mid-run, sharing a
queue, past their deadline. Each case checks the item's final state and that the data was written
exactly once: no capture is ever left half-written, and no attempt's result is kept once the
attempt no longer counts.

"Mid-attempt" is made exact with :class:`~tests.support.localqueue.ManifestGate`: the stage waits
at its last write, inside its data transaction, with its raw rows written but not committed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier, capture_id
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.db import migrate
from market_spine.db.engine import make_engine
from market_spine.db.schema import core_manifest
from market_spine.finra.sample import write_sample_week
from market_spine.services.queue import LocalQueue
from tests.operator.harness import wait_for
from tests.support.cli import Spine
from tests.support.localqueue import (
    ManifestGate,
    RestartablePostgres,
    WorkerProcess,
    Workers,
    executions,
    item,
    items,
    raw_rows,
    wait_state,
)

WEEK = date(2025, 11, 10)
NEXT_WEEK = date(2025, 11, 17)
FAST = {"worker_lease_seconds": "1.5", "worker_grace_seconds": "1"}  # heartbeat every 0.5 s
POLL = ("--poll-seconds", "0.2")


def now() -> datetime:
    return datetime.now(UTC)


def enqueue(engine: Engine, file: Path, *, tier: Tier = Tier.OTC, week: date = WEEK, chain: bool = False) -> None:
    spec = WorkItemSpec.model_validate(
        {
            "pipeline": INGEST,
            "partition": FinraPartition(week=week, tier=tier),
            "params": {"file": str(file)},
            "chain": chain,
            "retry": {"backoffSeconds": 1},
        }
    )
    assert LocalQueue(engine, now).enqueue(spec).created


def today_capture(tier: Tier = Tier.OTC, week: date = WEEK) -> str:
    return capture_id(tier, week, now().date())


@pytest.fixture
def week_file(tmp_path: Path) -> tuple[Path, int]:
    path = write_sample_week(tmp_path / "week.csv", WEEK, Tier.OTC, symbols=300, seed=3)
    return path, sum(1 for _ in path.open()) - 1


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(database_url, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def gate(engine: Engine) -> Iterator[ManifestGate]:
    held = ManifestGate(engine)
    yield held
    held.open()


def held_at_the_gate(
    engine: Engine, workers: Workers, gate: ManifestGate, file: Path, *args: str, **settings: str
) -> WorkerProcess:
    """Enqueue the week, start a worker, and wait until its attempt waits at its last write."""
    enqueue(engine, file)
    gate.close()
    worker = workers.start(*args, **settings)
    gate.wait_for_attempts(1)
    return worker


def test_kill_9_mid_attempt_the_lease_runs_out_the_item_is_retried_and_nothing_is_half_written(
    engine: Engine, workers: Workers, gate: ManifestGate, week_file: tuple[Path, int], spine: Spine
) -> None:
    file, rows = week_file
    first = held_at_the_gate(engine, workers, gate, file, *POLL, **FAST)
    running = item(engine, INGEST)
    assert running["state"] == "RUNNING" and running["lease_expires_at"] is not None

    first.kill()  # kill -9, its raw rows written and not committed
    gate.open()
    assert raw_rows(engine) == 0
    orphan = item(engine, INGEST)  # as the last heartbeat before the kill left it
    assert orphan["state"] == "RUNNING"  # until the lease runs out
    lease = orphan["lease_expires_at"]

    # With no worker left, the doctor says what happened and what re-attempts it.
    wait_for(lambda: now() > lease, what="the dead worker's lease to run out")
    doctor = spine("doctor", "finra.otc_transparency", "--format", "json")
    assert doctor.code == 1 and doctor.json()["lost_work"] == 1
    (lost_gap,) = [g for g in doctor.json()["gaps"] if g["kind"] == "lost_work"]
    assert lost_gap["partition"] == {"tier": "OTC", "week": WEEK.isoformat()}
    assert lost_gap["worker"] == running["locked_by"] and lost_gap["remediation"] == "spine worker --until-idle"

    second = workers.start(*POLL, **FAST)
    done = wait_state(engine, INGEST, "COMPLETE")
    runs = executions(engine, done["id"])
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "FAILED"), (2, "SUCCEEDED")]
    lost = runs[0]
    assert lost["error"].startswith("worker ") and "stopped renewing its lease" in lost["error"]
    assert lost["finished_at"] >= lease  # lost only once its last lease ran out
    assert runs[1]["started_at"] >= lost["finished_at"]  # then retried after its backoff
    assert (done["attempt_count"], done["total_attempts"]) == (2, 2)
    assert raw_rows(engine, today_capture()) == rows  # exactly once
    output = second.output()
    assert "attempt 1/3 ended: worker " in output and "stopped renewing its lease" in output
    assert "attempt 2/3 completed" in output
    assert spine("doctor", "finra.otc_transparency", "--format", "json").json()["lost_work"] == 0


def test_sigterm_gives_an_unfinished_attempt_back_after_the_grace_period(
    engine: Engine, workers: Workers, gate: ManifestGate, week_file: tuple[Path, int]
) -> None:
    file, rows = week_file
    first = held_at_the_gate(engine, workers, gate, file, *POLL, **FAST)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    released = item(engine, INGEST)
    assert (released["state"], released["attempt_count"], released["state_reason"]) == ("PENDING", 0, "Released")
    assert [r["outcome"] for r in executions(engine, released["id"])] == ["RELEASED"]
    assert "given back unfinished" in first.output() and "SIGTERM received" in first.output()
    gate.open()
    assert raw_rows(engine) == 0

    last = workers.start("--until-idle", **FAST)
    assert last.wait() == 0
    done = item(engine, INGEST)
    assert (done["state"], done["attempt_count"], done["total_attempts"]) == ("COMPLETE", 1, 2)
    assert raw_rows(engine, today_capture()) == rows


def test_sigterm_lets_a_running_attempt_finish_within_the_grace_period(
    engine: Engine, workers: Workers, gate: ManifestGate, week_file: tuple[Path, int]
) -> None:
    file, rows = week_file
    worker = held_at_the_gate(
        engine, workers, gate, file, *POLL, worker_lease_seconds="1.5", worker_grace_seconds="600"
    )
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in worker.output(), what="the worker to take the signal")
    assert worker.alive  # waiting for its attempt, claiming nothing new:
    enqueue(engine, file, week=NEXT_WEEK)  # due now, yet it must stay queued for another worker
    gate.open()
    assert worker.wait() == 0
    queued = items(engine)[f"ingest_week {FinraPartition(week=NEXT_WEEK, tier=Tier.OTC).key}"]
    assert (queued["state"], queued["attempt_count"], executions(engine, queued["id"])) == ("PENDING", 0, [])
    done = items(engine)[f"ingest_week {FinraPartition(week=WEEK, tier=Tier.OTC).key}"]
    assert (done["state"], done["attempt_count"]) == ("COMPLETE", 1)
    assert [r["outcome"] for r in executions(engine, done["id"])] == ["SUCCEEDED"]
    assert raw_rows(engine, today_capture()) == rows


def test_cancel_during_a_run_stays_cancelled_and_the_late_result_is_rolled_back(
    engine: Engine, workers: Workers, gate: ManifestGate, week_file: tuple[Path, int]
) -> None:
    # Finding 2: the worker wrote COMPLETE over a CANCELLED item. A long lease keeps the heartbeat
    # from noticing: the fence of the stage's own transaction is what refuses the result.
    file, _rows = week_file
    worker = held_at_the_gate(engine, workers, gate, file, *POLL, worker_lease_seconds="600")
    cancelled = LocalQueue(engine, now).cancel(INGEST, FinraPartition(week=WEEK, tier=Tier.OTC))
    assert cancelled.state.value == "CANCELLED"
    gate.open()  # the stage commits now, or tries to
    wait_for(lambda: "stopped:" in worker.output(), what="the worker to report the stopped attempt")
    after = item(engine, INGEST)
    assert after["state"] == "CANCELLED" and after["capture_id"] is None
    assert [r["outcome"] for r in executions(engine, after["id"])] == ["CANCELLED"]
    assert raw_rows(engine) == 0
    with engine.connect() as conn:
        assert conn.execute(select(core_manifest)).first() is None
    assert worker.alive


def test_cancel_while_running_stops_the_attempt_at_once(
    engine: Engine, workers: Workers, gate: ManifestGate, week_file: tuple[Path, int]
) -> None:
    # The cancel's "stop the attempt" effect: the heartbeat finds the lease gone and cancels the
    # attempt's statement, without waiting for the stage to reach its commit (the gate stays shut).
    file, _rows = week_file
    worker = held_at_the_gate(engine, workers, gate, file, *POLL, **FAST)
    LocalQueue(engine, now).cancel(INGEST, FinraPartition(week=WEEK, tier=Tier.OTC))
    wait_for(lambda: "stopped: the item was cancelled while the attempt ran" in worker.output(), what="the stop")
    assert gate.waiting() == []
    stopped = item(engine, INGEST)
    assert stopped["state"] == "CANCELLED"
    assert [r["outcome"] for r in executions(engine, stopped["id"])] == ["CANCELLED"]
    gate.open()
    assert raw_rows(engine) == 0


def test_an_attempt_past_its_deadline_fails_with_deadline_exceeded_and_writes_nothing(
    engine: Engine, workers: Workers, gate: ManifestGate, week_file: tuple[Path, int]
) -> None:
    file, _rows = week_file
    enqueue(engine, file)
    gate.close()
    worker = workers.start(*POLL, **FAST, default_active_deadline_seconds="1")
    failed = wait_state(engine, INGEST, "FAILED")
    runs = executions(engine, failed["id"])
    assert [r["outcome"] for r in runs] == ["FAILED"] * 3
    assert all(r["error"].startswith("the attempt ran past its deadline of 1s") for r in runs)
    assert failed["state_reason"] == "DeadlineExceeded"
    gate.open()
    assert raw_rows(engine) == 0
    assert worker.output().count("past its deadline") >= 3


def test_two_workers_on_one_queue_run_every_attempt_once(engine: Engine, workers: Workers, tmp_path: Path) -> None:
    first = workers.start(*POLL, "--concurrency", "2", **FAST)
    second = workers.start(*POLL, "--concurrency", "2", **FAST)
    for worker in (first, second):  # both compete for the queue from its first item
        wait_for(lambda w=worker: "polling every" in w.output(), what="the worker to start polling")
    partitions = [(Tier.OTC, WEEK), (Tier.OTC, date(2025, 11, 17)), (Tier.NMS_TIER_2, WEEK), (Tier.NMS_TIER_1, WEEK)]
    sizes = {}
    for tier, week in partitions:
        file = write_sample_week(tmp_path / f"{tier.value}-{week}.csv", week, tier, symbols=80, seed=7)
        sizes[(tier, week)] = sum(1 for _ in file.open()) - 1
        enqueue(engine, file, tier=tier, week=week, chain=True)

    def all_done() -> bool:
        with engine.connect() as conn:
            rows = conn.execute(select(core_manifest.c.stage)).all()
        return len(rows) == 3 * len(partitions)

    wait_for(all_done, 180, "every stage of every partition")
    rows = list(_items(engine))
    assert len(rows) == 3 * len(partitions)
    for row in rows:
        assert (row["state"], row["attempt_count"], row["total_attempts"]) == ("COMPLETE", 1, 1), row
        assert [r["outcome"] for r in executions(engine, row["id"])] == ["SUCCEEDED"]
    for (tier, week), size in sizes.items():
        assert raw_rows(engine, today_capture(tier, week)) == size
    assert first.alive and second.alive
    outputs = first.output() + second.output()
    assert outputs.count(" completed in ") == 3 * len(partitions)  # one line per attempt, none twice
    assert " completed in " in first.output() and " completed in " in second.output()


def _items(engine: Engine) -> list[dict[str, object]]:
    from market_spine.db.schema import core_work_items

    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(core_work_items)).mappings()]


@pytest.fixture(scope="module")
def restartable() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    migrate_engine = make_engine(server.url)
    migrate.upgrade(migrate_engine)
    migrate_engine.dispose()
    yield server
    server.close()


def test_a_database_restart_mid_attempt_the_worker_survives_and_the_item_completes_once(
    restartable: RestartablePostgres, tmp_path: Path, week_file: tuple[Path, int]
) -> None:
    file, rows = week_file
    engine = make_engine(restartable.url)
    pool = Workers(restartable.url, tmp_path)
    gate = ManifestGate(engine)
    try:
        enqueue(engine, file)
        gate.close()
        worker = pool.start(*POLL, worker_lease_seconds="3")
        gate.wait_for_attempts(1)
        restartable.crash()  # pg_ctl stop -m immediate: every session is cut mid-transaction
        gate.conn = None  # its session died with the server
        restartable.start()
        engine.dispose()
        done = wait_state(engine, INGEST, "COMPLETE")
        assert worker.alive  # it waited the outage out
        runs = executions(engine, done["id"])
        assert [r["outcome"] for r in runs] == ["FAILED", "SUCCEEDED"]
        assert done["attempt_count"] == 2
        assert raw_rows(engine, today_capture()) == rows
        assert "the database connection failed" in worker.output()
    finally:
        gate.open()
        pool.stop_all()
        engine.dispose()


def test_a_restatement_runs_through_the_chain_on_the_new_capture(
    engine: Engine, workers: Workers, tmp_path: Path
) -> None:
    file = write_sample_week(tmp_path / "week.csv", WEEK, Tier.OTC, symbols=60, seed=1)
    enqueue(engine, file, chain=True)
    assert workers.start("--until-idle").wait() == 0
    first = {r["stage"]: r["execution_id"] for r in _manifest(engine)}
    assert set(first) == {"RAW", "NORMALIZED", "CALC"}
    # FINRA corrects the week: the file changes, and the ingest is re-run (a replay of today's capture).
    corrected = write_sample_week(tmp_path / "week.csv", WEEK, Tier.OTC, symbols=90, seed=2)
    LocalQueue(engine, now).retry(INGEST, FinraPartition(week=WEEK, tier=Tier.OTC))
    worker = workers.start("--until-idle")
    assert worker.wait() == 0
    second = {r["stage"]: r for r in _manifest(engine)}
    assert all(second[s]["execution_id"] != first[s] for s in first)  # every stage ran again
    size = sum(1 for _ in corrected.open()) - 1
    assert {s: r["row_count"] for s, r in second.items() if s != "CALC"} == {"RAW": size, "NORMALIZED": size}
    for pipeline in (INGEST, NORMALIZE, COMPUTE):
        row = item(engine, pipeline)
        assert row["state"] == "COMPLETE"
        assert [r["outcome"] for r in executions(engine, row["id"])] == ["SUCCEEDED", "SUCCEEDED"]
    assert "re-running normalize_week" in worker.output()


def _manifest(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(core_manifest)).mappings()]
