"""Assertions shared by the operator scenarios: one Job per attempt, and a CR status that the
database mirror (``core_work_items``, ``core_executions``) agrees with."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from market_spine.core.naming import job_name
from market_spine.core.resource import LABEL_ATTEMPT, WorkItemStatus
from market_spine.db.schema import core_executions, core_work_items
from tests.operator.harness import Namespace, wait_for


def one_job_per_attempt(ns: Namespace, name: str) -> WorkItemStatus:
    """Every attempt has exactly one Job, named ``<item>-a<n>``, and no Job exists for an attempt
    the status does not know about."""
    status = ns.status(name)
    jobs = ns.jobs(name)
    attempts = [int(j["metadata"]["labels"][LABEL_ATTEMPT]) for j in jobs]
    assert len(attempts) == len(set(attempts)), f"two Jobs for one attempt: {[j['metadata']['name'] for j in jobs]}"
    for job, attempt in zip(jobs, attempts, strict=True):
        assert job["metadata"]["name"] == job_name(name, attempt)
        assert 1 <= attempt <= status.total_attempts, f"Job for attempt {attempt} beyond {status.total_attempts}"
    history = [r.attempt for r in status.history]
    assert history == list(range(status.total_attempts - len(history) + 1, status.total_attempts + 1))
    assert [r.job for r in status.history] == [job_name(name, n) for n in history]
    return status


def _row(engine: Engine, name: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(core_work_items).where(core_work_items.c.k8s_name == name)).first()
    return dict(row._mapping) if row else None


def _executions(engine: Engine, execution_ids: list[str]) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(core_executions).where(core_executions.c.execution_id.in_(execution_ids)))
        return {r.execution_id: dict(r._mapping) for r in rows}


def mirrored(ns: Namespace, name: str, engine: Engine, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the database mirror agrees with the object's status; return the row."""

    def agrees() -> dict[str, Any] | None:
        status = ns.status(name)
        row = _row(engine, name)
        if row is None or status.state is None:
            return None
        if (row["state"], row["attempt_count"]) != (status.state.value, status.attempts):
            return None
        if (row["latest_execution_id"], row["last_error"]) != (status.latest_execution_id, status.last_error):
            return None
        if row["next_attempt_at"] != status.next_attempt_at:
            return None
        executions = _executions(engine, [r.execution_id for r in status.history])
        for record in status.history:
            execution = executions.get(record.execution_id)
            if execution is None or execution["outcome"] != record.outcome.value:
                return None
            if (execution["attempt"], execution["job_name"], execution["work_item_id"]) != (
                record.attempt,
                record.job,
                row["id"],
            ):
                return None
        return row

    row: dict[str, Any] = wait_for(agrees, timeout, f"the database row of {name} to match its status")
    return row


def consistent(ns: Namespace, name: str, engine: Engine) -> WorkItemStatus:
    status = one_job_per_attempt(ns, name)
    mirrored(ns, name, engine)
    return status
