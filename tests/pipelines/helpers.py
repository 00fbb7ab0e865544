"""Helpers for pipeline tests: run a registered stage the way ``services.runs`` does, count rows.

Stages are called through the registry (``get_pipeline(name).run(RunContext(...))``), the same code
path as ``spine run`` and the worker; counts use SQLAlchemy Core, never SQL text with values.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, func, select

from market_spine.core.partitions import Tier
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE, Stage
from market_spine.db.schema import core_manifest, rejects
from market_spine.pipelines.registry import RunContext, StageResult, get_pipeline

# A Tuesday: the day after FINRA published the OTC week of 2025-11-10 (on Monday 2025-12-15).
NOW = datetime(2025, 12, 16, 14, 30, tzinfo=UTC)
CHAIN = (INGEST, NORMALIZE, COMPUTE)


def run(
    engine: Engine,
    pipeline: str,
    week: date,
    tier: Tier,
    *,
    params: Mapping[str, str] | None = None,
    now: datetime = NOW,
    capture_date: date | None = None,
) -> StageResult:
    ctx = RunContext(
        engine=engine,
        pipeline=pipeline,
        week=week,
        tier=tier,
        execution_id=uuid.uuid4().hex,
        now=now,
        capture_date=capture_date,
        params=dict(params or {}),
    )
    return get_pipeline(pipeline).run(ctx)


def run_chain(
    engine: Engine,
    file: str | Path,
    week: date,
    tier: Tier,
    *,
    now: datetime = NOW,
    capture_date: date | None = None,
) -> list[StageResult]:
    """ingest → normalize → compute, each later stage reading the capture the ingest wrote."""
    ingest = run(engine, INGEST, week, tier, params={"file": str(file)}, now=now, capture_date=capture_date)
    results = [ingest]
    for pipeline in CHAIN[1:]:
        results.append(run(engine, pipeline, week, tier, params={"capture_id": ingest.capture_id}, now=now))
    return results


def count(engine: Engine, table: Table, **equal: Any) -> int:
    query = select(func.count()).select_from(table)
    for name, value in equal.items():
        query = query.where(table.c[name] == value)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def manifest(engine: Engine) -> dict[str, tuple[int, str]]:
    """stage → (row_count, capture_id) for every manifest row."""
    with engine.connect() as conn:
        rows = conn.execute(select(core_manifest.c.stage, core_manifest.c.row_count, core_manifest.c.capture_id))
        return {stage: (rows_, capture) for stage, rows_, capture in rows}


def data_lines(path: Path) -> list[str]:
    """The data lines of a FINRA weekly file, counted independently of the product's parser."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines[1:] if line.strip()]


def reject_rows(engine: Engine) -> list[tuple[int, str, dict[str, str]]]:
    """(line number, reason, record) of every reject, in line order; all of them normalize's."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(rejects.c.line_number, rejects.c.reason, rejects.c.record, rejects.c.stage).order_by(
                rejects.c.line_number
            )
        ).all()
    assert {r.stage for r in rows} <= {Stage.NORMALIZED.value}
    return [(r.line_number, r.reason, r.record) for r in rows]
