"""Running pipeline stages: ``spine run``, the local worker's attempts, and the Job container.

Called by the CLI (``spine run``) and by ``services.worker``. Each stage runs in its own
transaction inside the pipeline; this module records the execution in ``core_executions`` and,
with ``chain``, runs the downstream stages on the capture the first one produced (with the
parameters ``core.lifecycle.downstream_params`` gives them, as a chained work item gets).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import Engine

from market_spine.config import load_settings
from market_spine.core.calendar import PublicationCalendar
from market_spine.core.lifecycle import downstream_params
from market_spine.core.partitions import DOMAIN, Tier, canonical_key, finra_partition
from market_spine.core.stages import next_pipeline
from market_spine.db.engine import first_line
from market_spine.db.workitems import ExecutionRecord, upsert_execution
from market_spine.finra.files import scan_weekly
from market_spine.pipelines.registry import RunContext, StageResult, get_pipeline

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class StageRun:
    pipeline: str
    execution_id: str
    result: StageResult


def new_execution_id() -> str:
    return uuid.uuid4().hex


def run_stage(
    engine: Engine,
    pipeline: str,
    week: date,
    tier: Tier,
    *,
    params: Mapping[str, str],
    execution_id: str,
    now: datetime,
    capture_date: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> StageResult:
    definition = get_pipeline(pipeline)
    ctx = RunContext(
        engine=engine,
        pipeline=pipeline,
        week=week,
        tier=tier,
        execution_id=execution_id,
        now=now,
        capture_date=capture_date,
        params=params,
        progress=progress,
    )
    return definition.run(ctx)


def run_recorded(
    engine: Engine,
    pipeline: str,
    week: date,
    tier: Tier,
    *,
    params: Mapping[str, str],
    clock: Clock,
    execution_id: str | None = None,
    capture_date: date | None = None,
    chain: bool = False,
    backend: str = "cli",
    progress: Callable[[int], None] | None = None,
) -> list[StageRun]:
    """Run ``pipeline`` (and, with ``chain``, the stages after it), recording each execution.

    The first stage uses ``execution_id`` when given (the operator's id for this attempt);
    chained stages get fresh ids. A failure is recorded as FAILED and re-raised.
    """
    get_pipeline(pipeline)  # an unknown name fails before anything is recorded
    runs: list[StageRun] = []
    current: str | None = pipeline
    current_params: Mapping[str, str] = params
    exec_id = execution_id or new_execution_id()
    key = canonical_key(finra_partition(week, tier))
    while current is not None:
        started = clock()
        base = ExecutionRecord(
            execution_id=exec_id,
            domain=DOMAIN,
            pipeline=current,
            partition_key=key,
            attempt=None if execution_id else 1,
            backend=backend,
            started_at=started,
        )
        with engine.begin() as conn:
            upsert_execution(conn, base)
        try:
            result = run_stage(
                engine,
                current,
                week,
                tier,
                params=current_params,
                execution_id=exec_id,
                now=started,
                capture_date=capture_date,
                progress=progress,
            )
        except Exception as exc:
            _finish(engine, base, clock(), "FAILED", error=first_line(exc))
            raise
        _finish(engine, base, clock(), "SUCCEEDED", result=result)
        runs.append(StageRun(current, exec_id, result))
        current = next_pipeline(current) if chain else None
        current_params = downstream_params(current_params, result.capture_id)
        exec_id = new_execution_id()
    return runs


def _finish(
    engine: Engine,
    base: ExecutionRecord,
    finished: datetime,
    outcome: str,
    *,
    error: str | None = None,
    result: StageResult | None = None,
) -> None:
    record = replace(
        base,
        finished_at=finished,
        outcome=outcome,
        error=error,
        capture_id=result.capture_id if result else None,
        row_count=result.row_count if result else None,
    )
    with engine.begin() as conn:
        upsert_execution(conn, record)


def infer_file_week(file: str, tier: Tier, calendar: PublicationCalendar) -> tuple[date, date]:
    """(trading week, publication day) of a weekly file whose week was not named: read it and take
    the week FINRA first published on its rows' earliest ``lastUpdateDate`` (see
    :meth:`market_spine.finra.files.WeekStats.infer_week`). The file is streamed, in bounded
    memory, with the download limits of the settings. Called by the CLI before it names the partition."""
    settings = load_settings()
    stats = scan_weekly(
        file, read_timeout=settings.download_timeout_seconds, deadline=settings.download_deadline_seconds
    )
    return stats.infer_week(tier, calendar)
