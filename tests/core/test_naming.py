"""Deterministic Kubernetes names for work items and Jobs (SPEC §3.4)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from market_spine.core.naming import job_name, work_item_name
from market_spine.core.partitions import DOMAIN, Tier, finra_partition
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX = 63
PIPELINES = (INGEST, NORMALIZE, COMPUTE)
WEEK = date(2025, 12, 15)


def assert_valid(name: str) -> None:
    assert len(name) <= MAX, name
    assert DNS_1123.fullmatch(name), name


def test_golden_name() -> None:
    # Names must be stable across releases: an operator upgraded mid-attempt recomputes them.
    name = work_item_name(DOMAIN, INGEST, {"week": "2025-11-10", "tier": "OTC"})
    assert name == "ingest-week-2025-11-10-otc-780929ab"
    assert_valid(name)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("tier", list(Tier))
def test_name_shape(pipeline: str, tier: Tier) -> None:
    name = work_item_name(DOMAIN, pipeline, finra_partition(WEEK, tier))
    stage = pipeline.rsplit(".", 1)[-1].replace("_", "-")
    slug = tier.value.lower().replace("_", "-")
    assert re.fullmatch(rf"{stage}-2025-12-15-{slug}-[0-9a-f]{{8}}", name), name
    assert_valid(name)


def test_deterministic_and_key_order_independent() -> None:
    a = work_item_name(DOMAIN, INGEST, {"week": "2025-12-15", "tier": "OTC"})
    b = work_item_name(DOMAIN, INGEST, {"tier": "OTC", "week": "2025-12-15"})
    c = work_item_name(DOMAIN, INGEST, finra_partition(WEEK, Tier.OTC))
    assert a == b == c
    assert all(work_item_name(DOMAIN, INGEST, finra_partition(WEEK, Tier.OTC)) == a for _ in range(10))


def test_different_partitions_and_pipelines_give_different_names() -> None:
    names = {
        work_item_name(DOMAIN, pipeline, finra_partition(WEEK - timedelta(weeks=w), tier))
        for pipeline in PIPELINES
        for tier in Tier
        for w in range(260)
    }
    assert len(names) == 3 * 3 * 260
    for name in names:
        assert_valid(name)


def test_domain_is_part_of_the_identity() -> None:
    partition = finra_partition(WEEK, Tier.OTC)
    assert work_item_name(DOMAIN, INGEST, partition) != work_item_name("other.domain", INGEST, partition)


LONG_PIPELINE = "finra.otc_transparency." + "very_long_pipeline_name_" * 5
AWKWARD = [
    (INGEST, {"week": "2025-12-15", "tier": "OTC"}),
    (LONG_PIPELINE, {"week": "2025-12-15", "tier": "NMS_TIER_1"}),
    (INGEST, {"week": "2025-12-15", "tier": "X" * 200}),
    (INGEST, {"a": "Ünïcödé Välue", "b": "UPPER lower", "c": "dots.and_underscores"}),
    ("Some.Pipeline.With CAPS & spaces", {"k": "v"}),
    ("trailing.dot.", {"week": "2025-12-15"}),
    ("x", {"week": "---", "tier": "___"}),
    ("x", {}),
    (INGEST, {"n": 42, "f": 1.5, "b": True}),
    (INGEST, {"k": "-" * 100 + "a"}),
    (INGEST, {"k": "a" * 53 + "-" + "b" * 20}),  # truncation lands on a dash
]


@pytest.mark.parametrize(("pipeline", "partition"), AWKWARD, ids=range(len(AWKWARD)))
def test_always_a_valid_dns_label(pipeline: str, partition: dict[str, object]) -> None:
    name = work_item_name(DOMAIN, pipeline, partition)
    assert_valid(name)
    assert re.search(r"-[0-9a-f]{8}$", name)


@pytest.mark.parametrize(("pipeline", "partition"), [("___", {}), ("x.", {"tier": "__"})])
def test_valid_dns_label_when_nothing_slugs(pipeline: str, partition: dict[str, object]) -> None:
    assert_valid(work_item_name(DOMAIN, pipeline, partition))


def test_long_names_truncate_but_stay_unique() -> None:
    prefix = "z" * 80
    a = work_item_name(DOMAIN, INGEST, {"tier": prefix + "a"})
    b = work_item_name(DOMAIN, INGEST, {"tier": prefix + "b"})
    assert len(a) == len(b) == MAX
    assert a[:-8] == b[:-8]  # same truncated head…
    assert a != b  # …told apart by the digest
    assert_valid(a)
    assert_valid(b)


# --- job names ----------------------------------------------------------------------------------------


def test_job_name_short_item() -> None:
    item = "ingest-week-2025-11-10-otc-780929ab"
    assert job_name(item, 1) == item + "-a1"
    assert job_name(item, 2) == item + "-a2"
    assert job_name(item, 20) == item + "-a20"


def test_job_name_deterministic() -> None:
    item = work_item_name(DOMAIN, LONG_PIPELINE, finra_partition(WEEK, Tier.OTC))
    assert job_name(item, 3) == job_name(item, 3)


@pytest.mark.parametrize(("pipeline", "partition"), AWKWARD, ids=range(len(AWKWARD)))
def test_job_names_valid_and_distinct_per_attempt(pipeline: str, partition: dict[str, object]) -> None:
    item = work_item_name(DOMAIN, pipeline, partition)
    jobs = [job_name(item, attempt) for attempt in range(1, 101)]
    assert len(set(jobs)) == 100
    for attempt, job in enumerate(jobs, start=1):
        assert_valid(job)
        assert job.endswith(f"-a{attempt}")


def test_job_name_length_boundary() -> None:
    exact = "a" * 60  # 60 + len("-a1") == 63: kept as is
    assert job_name(exact, 1) == exact + "-a1"
    over = "a" * 61  # 64: hashed
    job = job_name(over, 1)
    assert len(job) <= MAX
    assert job != over[: MAX - 3] + "-a1"
    assert re.fullmatch(r"a+-[0-9a-f]{6}-a1", job)
    assert_valid(job)


def test_job_name_for_63_char_items() -> None:
    item = work_item_name(DOMAIN, INGEST, {"tier": "y" * 200})
    assert len(item) == MAX
    for attempt in (1, 9, 10, 99, 100, 12345):
        job = job_name(item, attempt)
        assert_valid(job)
        assert job.endswith(f"-a{attempt}")


def test_job_name_long_items_sharing_a_prefix_differ() -> None:
    a = "p" * 58 + "-aaaa"
    b = "p" * 58 + "-bbbb"
    assert job_name(a, 1) != job_name(b, 1)
    assert_valid(job_name(a, 1))
    assert_valid(job_name(b, 1))


def test_job_name_truncation_on_a_dash() -> None:
    item = "a" * 52 + "-" + "b" * 10  # 63 chars; the cut at 53 ends in '-'
    job = job_name(item, 1)
    assert "--" not in job
    assert_valid(job)
