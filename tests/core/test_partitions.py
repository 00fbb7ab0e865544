"""Partitions, tiers, canonical keys and capture ids (SPEC §3.4, §4)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from market_spine.core.partitions import (
    DOMAIN,
    FINRA_TIER_IDS,
    Tier,
    UnknownTier,
    canonical_key,
    capture_day,
    capture_id,
    finra_partition,
    parse_tier,
)

NEW_YORK = ZoneInfo("America/New_York")


def test_domain_and_tier_values() -> None:
    assert DOMAIN == "finra.otc_transparency"
    assert [t.value for t in Tier] == ["NMS_TIER_1", "NMS_TIER_2", "OTC"]


# --- tiers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tier"),
    [
        ("NMS Tier 1", Tier.NMS_TIER_1),
        ("nms tier 1", Tier.NMS_TIER_1),
        ("NMS_TIER_1", Tier.NMS_TIER_1),
        ("nms-tier-1", Tier.NMS_TIER_1),
        ("Tier 1", Tier.NMS_TIER_1),
        ("tier_1", Tier.NMS_TIER_1),
        ("T1", Tier.NMS_TIER_1),
        ("t1", Tier.NMS_TIER_1),
        ("  T1 ", Tier.NMS_TIER_1),
        ("NMS Tier 2", Tier.NMS_TIER_2),
        ("NMS_TIER_2", Tier.NMS_TIER_2),
        ("Tier 2", Tier.NMS_TIER_2),
        ("tier_2", Tier.NMS_TIER_2),
        ("TIER-2", Tier.NMS_TIER_2),
        ("T2", Tier.NMS_TIER_2),
        ("t2", Tier.NMS_TIER_2),
        ("OTC", Tier.OTC),
        ("otc", Tier.OTC),
        ("Otc", Tier.OTC),
        ("OTCE", Tier.OTC),
        ("otce", Tier.OTC),
        ("O.T.C.", Tier.OTC),
    ],
)
def test_tier_aliases(raw: str, tier: Tier) -> None:
    assert parse_tier(raw) is tier


@pytest.mark.parametrize("tier", list(Tier))
def test_parse_tier_is_idempotent_on_canonical_values(tier: Tier) -> None:
    assert parse_tier(tier.value) is tier
    assert parse_tier(tier) is tier


@pytest.mark.parametrize("raw", ["Tier 3", "T3", "", "   ", "NMS", "OTCBB", "T12", "tier", "ATS", "nms tier one"])
def test_unknown_tier(raw: str) -> None:
    with pytest.raises(UnknownTier) as info:
        parse_tier(raw)
    assert str(info.value) == f"unknown tier {raw!r}; expected one of NMS_TIER_1 (T1), NMS_TIER_2 (T2), OTC (OTCE)"


def test_finra_tier_ids_map_both_ways() -> None:
    assert FINRA_TIER_IDS == {Tier.NMS_TIER_1: "T1", Tier.NMS_TIER_2: "T2", Tier.OTC: "OTCE"}
    assert {parse_tier(code) for code in FINRA_TIER_IDS.values()} == set(Tier)
    assert all(parse_tier(code) is tier for tier, code in FINRA_TIER_IDS.items())


def test_unknown_tier_is_a_value_error() -> None:
    assert issubclass(UnknownTier, ValueError)
    expected = r"^unknown tier 'Tier 3'; expected one of NMS_TIER_1 \(T1\), NMS_TIER_2 \(T2\), OTC \(OTCE\)$"
    with pytest.raises(ValueError, match=expected):
        parse_tier("Tier 3")


# --- canonical keys ---------------------------------------------------------------------------------


def test_canonical_key_is_order_independent() -> None:
    a = {"tier": "OTC", "week": "2025-12-15"}
    b = {"week": "2025-12-15", "tier": "OTC"}
    assert list(a) != list(b)
    assert canonical_key(a) == canonical_key(b) == '{"tier":"OTC","week":"2025-12-15"}'


def test_canonical_key_is_compact_sorted_json() -> None:
    key = canonical_key({"z": 1, "a": "x", "m": [1, 2]})
    assert key == '{"a":"x","m":[1,2],"z":1}'
    assert " " not in key
    assert json.loads(key) == {"z": 1, "a": "x", "m": [1, 2]}


def test_canonical_key_sorts_nested_keys() -> None:
    assert canonical_key({"b": {"y": 1, "x": 2}, "a": 0}) == '{"a":0,"b":{"x":2,"y":1}}'


def test_canonical_key_is_ascii_only() -> None:
    key = canonical_key({"venue": "Zürich"})
    assert key == '{"venue":"Z\\u00fcrich"}'
    assert key.isascii()
    assert json.loads(key) == {"venue": "Zürich"}


def test_canonical_key_accepts_any_mapping_and_does_not_mutate() -> None:
    source = {"week": "2025-12-15", "tier": "OTC"}
    proxy = MappingProxyType(source)
    assert canonical_key(proxy) == '{"tier":"OTC","week":"2025-12-15"}'
    assert list(source) == ["week", "tier"]


def test_canonical_key_tier_enum_equals_its_string() -> None:
    assert canonical_key({"tier": Tier.OTC}) == canonical_key({"tier": "OTC"}) == '{"tier":"OTC"}'


def test_canonical_key_distinguishes_values() -> None:
    keys = {
        canonical_key(finra_partition(date(2025, 12, 15) - timedelta(weeks=w), tier))
        for w in range(52)
        for tier in Tier
    }
    assert len(keys) == 52 * 3


def test_finra_partition() -> None:
    partition = finra_partition(date(2025, 12, 15), Tier.NMS_TIER_1)
    assert partition == {"week": "2025-12-15", "tier": "NMS_TIER_1"}
    assert all(type(v) is str for v in partition.values())
    assert canonical_key(partition) == '{"tier":"NMS_TIER_1","week":"2025-12-15"}'


# --- captures -----------------------------------------------------------------------------------------


def test_capture_id_format() -> None:
    assert (
        capture_id(Tier.OTC, date(2025, 12, 15), date(2025, 12, 16)) == "finra.otc_transparency:OTC:2025-12-15:20251216"
    )


@pytest.mark.parametrize(
    ("tier", "week", "day", "expected"),
    [
        (
            Tier.NMS_TIER_1,
            date(2025, 12, 15),
            date(2025, 12, 16),
            "finra.otc_transparency:NMS_TIER_1:2025-12-15:20251216",
        ),
        (Tier.NMS_TIER_2, date(2025, 1, 6), date(2025, 1, 7), "finra.otc_transparency:NMS_TIER_2:2025-01-06:20250107"),
        (Tier.OTC, date(2024, 12, 30), date(2025, 1, 2), "finra.otc_transparency:OTC:2024-12-30:20250102"),
        (Tier.OTC, date(2025, 12, 15), date(2025, 12, 15), "finra.otc_transparency:OTC:2025-12-15:20251215"),
    ],
)
def test_capture_id_examples(tier: Tier, week: date, day: date, expected: str) -> None:
    assert capture_id(tier, week, day) == expected


def test_capture_id_replay_and_restatement() -> None:
    week = date(2025, 12, 15)
    first = capture_id(Tier.OTC, week, date(2025, 12, 16))
    replay = capture_id(Tier.OTC, week, date(2025, 12, 16))
    restatement = capture_id(Tier.OTC, week, date(2025, 12, 23))
    assert first == replay  # same day: the same capture, replaced atomically
    assert restatement != first  # a later day's capture coexists
    assert restatement > first  # and sorts later, so "latest" is the max capture id of a partition


def test_capture_day_uses_utc_not_new_york() -> None:
    late_in_new_york = datetime(2025, 12, 15, 20, 0, tzinfo=NEW_YORK)  # 01:00 UTC on the 16th
    assert late_in_new_york.date() == date(2025, 12, 15)
    assert capture_day(late_in_new_york) == date(2025, 12, 16)
    assert (
        capture_id(Tier.OTC, date(2025, 12, 15), capture_day(late_in_new_york))
        == "finra.otc_transparency:OTC:2025-12-15:20251216"
    )


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2025, 12, 15, 18, 59, 59, tzinfo=NEW_YORK), date(2025, 12, 15)),  # 23:59:59 UTC
        (datetime(2025, 12, 15, 19, 0, 0, tzinfo=NEW_YORK), date(2025, 12, 16)),  # 00:00:00 UTC
        (datetime(2025, 7, 15, 19, 59, tzinfo=NEW_YORK), date(2025, 7, 15)),  # EDT: 23:59 UTC
        (datetime(2025, 7, 15, 20, 0, tzinfo=NEW_YORK), date(2025, 7, 16)),  # EDT: 00:00 UTC
        (datetime(2025, 12, 15, 23, 59, 59, 999_999, tzinfo=UTC), date(2025, 12, 15)),
        (datetime(2025, 12, 16, 0, 0, tzinfo=UTC), date(2025, 12, 16)),
        (datetime(2025, 12, 16, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo")), date(2025, 12, 15)),  # 23:00 UTC
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), date(2025, 12, 31)),
    ],
)
def test_capture_day_boundaries(now: datetime, day: date) -> None:
    assert capture_day(now) == day


def test_capture_day_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        capture_day(datetime(2025, 12, 15, 20, 0))  # noqa: DTZ001 - deliberately naive
