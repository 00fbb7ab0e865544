"""WorkItemSpec / FinraPartition: defaults, CRD camelCase aliases, validation (SPEC §3.1, §3.4)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from market_spine.core.backoff import RetryPolicy
from market_spine.core.naming import work_item_name
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.stages import INGEST, NORMALIZE
from market_spine.core.workitem import BACKFILL_PRIORITY, DEFAULT_PRIORITY, FinraPartition, WorkItemSpec

KEY_OTC = '{"tier":"OTC","week":"2025-12-15"}'


def minimal(**overrides: object) -> WorkItemSpec:
    # normalize_week needs no source, so it is the smallest valid work item.
    data: dict[str, object] = {"pipeline": NORMALIZE, "partition": {"week": "2025-12-15", "tier": "OTC"}}
    data.update(overrides)
    return WorkItemSpec.model_validate(data)


def test_defaults() -> None:
    spec = minimal()
    assert spec.domain == DOMAIN == "finra.otc_transparency"
    assert spec.pipeline == NORMALIZE
    assert spec.partition == FinraPartition(week=date(2025, 12, 15), tier=Tier.OTC)
    assert spec.params == {}
    assert spec.priority == DEFAULT_PRIORITY == 100
    assert spec.desired_at is None
    assert spec.max_attempts == 3
    assert spec.retry == RetryPolicy()
    assert (
        spec.retry.backoff_seconds,
        spec.retry.factor,
        spec.retry.max_backoff_seconds,
        spec.retry.jitter_seconds,
    ) == (300, 2.0, 3600, 0)
    assert spec.active_deadline_seconds is None
    assert spec.chain is False


def test_defaults_are_not_shared_between_instances() -> None:
    a, b = minimal(), minimal()
    a.params["x"] = "1"
    assert b.params == {}


def test_backfill_priority_is_below_default() -> None:
    assert BACKFILL_PRIORITY == 25
    assert BACKFILL_PRIORITY < DEFAULT_PRIORITY


def test_camel_case_crd_spec() -> None:
    spec = WorkItemSpec.model_validate(
        {
            "domain": DOMAIN,
            "pipeline": INGEST,
            "partition": {"week": "2025-12-15", "tier": "NMS Tier 1"},
            "params": {"file": "/landing/x.csv"},
            "priority": 25,
            "desiredAt": "2025-12-15T10:30:00Z",
            "maxAttempts": 5,
            "retry": {"backoffSeconds": 60, "factor": 3, "maxBackoffSeconds": 600, "jitterSeconds": 10},
            "activeDeadlineSeconds": 3600,
            "chain": True,
        }
    )
    assert spec.partition.week == date(2025, 12, 15)
    assert spec.partition.tier is Tier.NMS_TIER_1
    assert spec.params == {"file": "/landing/x.csv"}
    assert spec.priority == 25
    assert spec.desired_at == datetime(2025, 12, 15, 10, 30, tzinfo=UTC)
    assert spec.max_attempts == 5
    assert spec.retry == RetryPolicy(backoff_seconds=60, factor=3, max_backoff_seconds=600, jitter_seconds=10)
    assert spec.active_deadline_seconds == 3600
    assert spec.chain is True


def test_camel_case_round_trip() -> None:
    spec = minimal(desiredAt="2025-12-15T10:30:00+01:00", maxAttempts=4, retry={"backoffSeconds": 60})
    dumped = spec.model_dump(mode="json", by_alias=True)
    assert dumped["partition"] == {"week": "2025-12-15", "tier": "OTC"}
    assert dumped["maxAttempts"] == 4
    assert dumped["retry"]["backoffSeconds"] == 60
    assert "desiredAt" in dumped and "activeDeadlineSeconds" in dumped
    assert WorkItemSpec.model_validate(dumped) == spec


def test_snake_case_names_also_validate() -> None:
    snake = minimal(max_attempts=4, desired_at="2025-12-15T10:30:00Z", active_deadline_seconds=60)
    camel = minimal(maxAttempts=4, desiredAt="2025-12-15T10:30:00Z", activeDeadlineSeconds=60)
    assert snake == camel


# --- desiredAt ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["2025-12-15T10:30:00", datetime(2025, 12, 15, 10, 30)],  # noqa: DTZ001 - deliberately naive
    ids=["string", "datetime"],
)
def test_desired_at_must_be_timezone_aware(value: object) -> None:
    with pytest.raises(ValidationError, match="desiredAt must carry a time zone"):
        minimal(desiredAt=value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-12-15T10:30:00Z", datetime(2025, 12, 15, 10, 30, tzinfo=UTC)),
        ("2025-12-15T05:30:00-05:00", datetime(2025, 12, 15, 10, 30, tzinfo=UTC)),
        (
            datetime(2025, 12, 15, 19, 30, tzinfo=timezone(timedelta(hours=9))),
            datetime(2025, 12, 15, 10, 30, tzinfo=UTC),
        ),
        (None, None),
    ],
)
def test_desired_at_aware_values(value: object, expected: datetime | None) -> None:
    spec = minimal(desiredAt=value)
    assert spec.desired_at == expected
    if expected is not None:
        assert spec.desired_at is not None and spec.desired_at.tzinfo is not None


# --- partition key and tiers ---------------------------------------------------------------------------------


def test_partition_key_is_canonical() -> None:
    assert minimal().partition_key == KEY_OTC
    reordered = minimal(partition={"tier": "OTC", "week": "2025-12-15"})
    assert reordered.partition_key == KEY_OTC
    assert FinraPartition(week=date(2025, 12, 15), tier=Tier.OTC).key == KEY_OTC


@pytest.mark.parametrize("tier", ["OTC", "otc", "OTCE", "otce", "Otc", Tier.OTC])
def test_tier_alias_accepted_and_canonicalised(tier: object) -> None:
    spec = minimal(partition={"week": "2025-12-15", "tier": tier})
    assert spec.partition.tier is Tier.OTC
    assert spec.partition_key == KEY_OTC
    assert spec.name == minimal().name


@pytest.mark.parametrize(
    ("alias", "tier"),
    [("NMS Tier 1", Tier.NMS_TIER_1), ("T1", Tier.NMS_TIER_1), ("tier_2", Tier.NMS_TIER_2), ("T2", Tier.NMS_TIER_2)],
)
def test_nms_tier_aliases(alias: str, tier: Tier) -> None:
    partition = FinraPartition.model_validate({"week": "2025-12-15", "tier": alias})
    assert partition.tier is tier
    assert partition.as_dict() == {"week": "2025-12-15", "tier": tier.value}


def test_unknown_tier_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="unknown tier 'Tier 3'"):
        minimal(partition={"week": "2025-12-15", "tier": "Tier 3"})


@pytest.mark.parametrize(
    "partition",
    [
        {"week": "2025-13-01", "tier": "OTC"},
        {"week": "not a date", "tier": "OTC"},
        {"tier": "OTC"},
        {"week": "2025-12-15"},
        {"week": "2025-12-15", "tier": "OTC", "symbol": "AAPL"},
        {"week": "2025-12-15", "tier": 1},
        {"week": "2025-12-15", "tier": None},
    ],
    ids=str,
)
def test_bad_partitions(partition: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        minimal(partition=partition)


@pytest.mark.parametrize("day", ["2025-11-11", "2025-11-14", "2025-11-16"])
def test_a_partition_week_must_be_its_monday(day: str) -> None:
    with pytest.raises(ValidationError) as error:
        FinraPartition.model_validate({"week": day, "tier": "OTC"})
    message = error.value.errors()[0]["msg"]
    assert message.startswith("Value error, week must be the Monday that starts the trading week")
    assert message.endswith("; use 2025-11-10")


def test_partition_is_frozen() -> None:
    partition = minimal().partition
    with pytest.raises(ValidationError):
        partition.tier = Tier.NMS_TIER_1  # type: ignore[misc]


# --- field validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"pipeline": ""},
        {"priority": -1},
        {"priority": 1001},
        {"maxAttempts": 0},
        {"maxAttempts": 21},
        {"activeDeadlineSeconds": 29},
        {"activeDeadlineSeconds": 86_401},
        {"retry": {"backoffSeconds": 600, "maxBackoffSeconds": 60}},
        {"retry": {"backoffSeconds": 0}},
        {"retry": {"unknown": 1}},
        {"params": {"n": 1}},
        {"unknownField": True},
    ],
    ids=str,
)
def test_rejected_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        minimal(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"priority": 0},
        {"priority": 1000},
        {"maxAttempts": 1},
        {"maxAttempts": 20},
        {"activeDeadlineSeconds": 30},
        {"activeDeadlineSeconds": 86_400},
    ],
    ids=str,
)
def test_boundary_values_accepted(overrides: dict[str, object]) -> None:
    minimal(**overrides)


def test_pipeline_is_required() -> None:
    with pytest.raises(ValidationError):
        WorkItemSpec.model_validate({"partition": {"week": "2025-12-15", "tier": "OTC"}})


# --- name ------------------------------------------------------------------------------------------------


def test_name_is_the_deterministic_work_item_name() -> None:
    spec = minimal()
    assert spec.name == work_item_name(DOMAIN, NORMALIZE, {"week": "2025-12-15", "tier": "OTC"})
    assert spec.name == "normalize-week-2025-12-15-otc-3af944a9"
    ingest = minimal(pipeline=INGEST, params={"source": "finra-api"})
    assert ingest.name == "ingest-week-2025-12-15-otc-2da37ac2"


def test_name_ignores_non_identity_fields() -> None:
    # A CronJob that runs twice with different scheduling details still names the same item.
    base = minimal()
    other = minimal(priority=5, maxAttempts=9, chain=True, params={"file": "/x"}, desiredAt="2026-01-01T00:00:00Z")
    assert other.name == base.name
    assert minimal(pipeline="finra.otc_transparency.compute_week").name != base.name
    assert minimal(partition={"week": "2025-12-08", "tier": "OTC"}).name != base.name


@pytest.mark.parametrize("params", [{"file": "/landing/w.csv"}, {"url": "https://x/w.csv"}, {"source": "finra-api"}])
def test_an_ingest_names_its_source(params: dict[str, str]) -> None:
    assert minimal(pipeline=INGEST, params=params).params == params


def test_an_ingest_without_a_source_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"needs params\.file"):
        minimal(pipeline=INGEST, params={"capture_id": "x"})
