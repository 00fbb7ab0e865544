"""What a work item asks for: the spec shared by the local queue and the SpineWorkItem resource.

Field names are snake_case in Python with the CRD's camelCase as aliases, so the same model
validates ``spine work enqueue`` arguments, database rows and ``spec`` of a custom resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from market_spine.core.backoff import DEFAULT_MAX_ATTEMPTS, RetryPolicy
from market_spine.core.calendar import check_week
from market_spine.core.lifecycle import ChainNext
from market_spine.core.naming import work_item_name
from market_spine.core.partitions import DOMAIN, Tier, canonical_key, finra_partition, parse_tier
from market_spine.core.stages import INGEST

DEFAULT_PRIORITY = 100
BACKFILL_PRIORITY = 25  # below the current week's default, so live work runs first


class FinraPartition(BaseModel):
    """A FINRA OTC partition: the trading week (FINRA's ``weekStartDate``, a Monday) and the tier."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    week: date
    tier: Tier

    @field_validator("week")
    @classmethod
    def _monday(cls, value: date) -> date:
        return check_week(value)

    @field_validator("tier", mode="before")
    @classmethod
    def _tier_alias(cls, value: Any) -> Any:
        return parse_tier(value) if isinstance(value, str) else value

    def as_dict(self) -> dict[str, str]:
        """The partition as stored in ``core_work_items.partition_key``."""
        return finra_partition(self.week, self.tier)

    @property
    def key(self) -> str:
        return canonical_key(self.as_dict())


def item_ref(pipeline: str, partition: FinraPartition) -> str:
    """How the ``spine work`` verbs name a work item, for the commands that messages suggest."""
    return f"{pipeline} --week {partition.week.isoformat()} --tier {partition.tier.value}"


class WorkItemSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    domain: str = DOMAIN
    pipeline: str = Field(min_length=1)
    partition: FinraPartition
    params: dict[str, str] = Field(default_factory=dict)
    priority: int = Field(DEFAULT_PRIORITY, ge=0, le=1000)
    desired_at: datetime | None = Field(None, alias="desiredAt")
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, alias="maxAttempts", ge=1, le=20)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    active_deadline_seconds: int | None = Field(None, alias="activeDeadlineSeconds", ge=30, le=86_400)
    chain: bool = False

    @field_validator("desired_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("desiredAt must carry a time zone (e.g. 2025-12-15T10:30:00Z)")
        return value

    @model_validator(mode="after")
    def _ingest_names_its_source(self) -> WorkItemSpec:
        # An ingest with no source can only fail, on every attempt: refuse it when it is enqueued.
        if self.pipeline == INGEST and not ({"file", "url", "source"} & self.params.keys()):
            raise ValueError("an ingest work item needs params.file (a path or URL) or params.source (finra-api)")
        return self

    @property
    def partition_key(self) -> str:
        return self.partition.key

    @property
    def name(self) -> str:
        """The deterministic Kubernetes name of this work item."""
        return work_item_name(self.domain, self.pipeline, self.partition.as_dict())

    @property
    def ref(self) -> str:
        return item_ref(self.pipeline, self.partition)

    def downstream(self, step: ChainNext) -> WorkItemSpec:
        """The spec of the next stage's item that ``step`` (``core.lifecycle.chain``) creates: the same
        partition, priority, attempts, backoff and deadline, chained onwards, reading ``step``'s output."""
        return WorkItemSpec(
            domain=self.domain,
            pipeline=step.pipeline,
            partition=self.partition,
            params=dict(step.params),
            priority=self.priority,
            max_attempts=self.max_attempts,
            retry=self.retry,
            active_deadline_seconds=self.active_deadline_seconds,
            chain=True,
        )


class EnqueueResult(BaseModel):
    """What ``spine work enqueue`` reports, for either backend: the item's name, whether this call
    created it (False = "already enqueued", a no-op), and its current state."""

    model_config = ConfigDict(frozen=True)

    name: str
    pipeline: str
    partition_key: str
    created: bool
    state: str


def enqueue_each(
    enqueue: Callable[[WorkItemSpec], EnqueueResult],
    specs: Iterable[WorkItemSpec],
    progress: Callable[[EnqueueResult], None] | None = None,
) -> list[EnqueueResult]:
    """Backfill on any backend: enqueue each spec in turn (each one idempotent), reporting progress."""
    results = []
    for spec in specs:
        result = enqueue(spec)
        results.append(result)
        if progress:
            progress(result)
    return results
