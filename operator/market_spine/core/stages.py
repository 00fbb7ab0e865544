"""The FINRA stage chain: RAW → NORMALIZED → CALC, and which pipeline produces which stage.

One place for the chain, read by the pipeline registry (what to run next with ``--chain``), the
operator (which work item to create on COMPLETE) and the doctor (which stage a partition lacks).
"""

from __future__ import annotations

import enum

from market_spine.core.partitions import DOMAIN


class Stage(enum.StrEnum):
    RAW = "RAW"
    NORMALIZED = "NORMALIZED"
    CALC = "CALC"


STAGE_ORDER: tuple[Stage, ...] = (Stage.RAW, Stage.NORMALIZED, Stage.CALC)

INGEST = f"{DOMAIN}.ingest_week"
NORMALIZE = f"{DOMAIN}.normalize_week"
COMPUTE = f"{DOMAIN}.compute_week"

PIPELINE_STAGE: dict[str, Stage] = {INGEST: Stage.RAW, NORMALIZE: Stage.NORMALIZED, COMPUTE: Stage.CALC}
STAGE_PIPELINE: dict[Stage, str] = {stage: name for name, stage in PIPELINE_STAGE.items()}


def next_pipeline(pipeline: str) -> str | None:
    """The pipeline that consumes what ``pipeline`` produces, or None at the end of the chain."""
    stage = PIPELINE_STAGE.get(pipeline)
    if stage is None:
        return None
    index = STAGE_ORDER.index(stage)
    return STAGE_PIPELINE[STAGE_ORDER[index + 1]] if index + 1 < len(STAGE_ORDER) else None
