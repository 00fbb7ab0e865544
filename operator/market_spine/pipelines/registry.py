"""The registry of pipelines: name → the function that runs one stage for one partition.

Called by ``services.runs`` (``spine run``, the local worker, the pipeline container in a Job) and
by the operator, which refuses unknown pipelines up front with a terminal state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine

from market_spine.core.partitions import Tier
from market_spine.core.stages import Stage
from market_spine.errors import UsageError


@dataclass(frozen=True)
class RunContext:
    """Everything one stage run needs. ``params`` carries the source options (``file``, ``source``,
    ``url``) and an optional ``capture_id`` to read from instead of the latest capture."""

    engine: Engine
    pipeline: str
    week: date  # the trading week: FINRA's weekStartDate, a Monday
    tier: Tier
    execution_id: str
    now: datetime
    capture_date: date | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    progress: Callable[[int], None] | None = None  # called with rows done, for a progress bar


@dataclass(frozen=True)
class StageResult:
    stage: Stage
    capture_id: str
    row_count: int
    rejected: int = 0
    notes: tuple[str, ...] = ()  # things the user should know about an accepted input


PipelineFn = Callable[[RunContext], StageResult]


@dataclass(frozen=True)
class PipelineDef:
    name: str
    stage: Stage
    run: PipelineFn
    description: str


_REGISTRY: dict[str, PipelineDef] = {}


def register(name: str, stage: Stage, description: str) -> Callable[[PipelineFn], PipelineFn]:
    def decorator(fn: PipelineFn) -> PipelineFn:
        _REGISTRY[name] = PipelineDef(name, stage, fn, description)
        return fn

    return decorator


def _load() -> None:
    # Importing the stage modules registers them; done lazily so the registry has no import cycle.
    from market_spine.pipelines import compute, ingest, normalize  # noqa: F401


def all_pipelines() -> Mapping[str, PipelineDef]:
    _load()
    return dict(_REGISTRY)


def get_pipeline(name: str) -> PipelineDef:
    pipelines = all_pipelines()
    try:
        return pipelines[name]
    except KeyError:
        known = ", ".join(sorted(pipelines))
        raise UsageError(f"unknown pipeline {name!r}; known pipelines: {known}") from None
