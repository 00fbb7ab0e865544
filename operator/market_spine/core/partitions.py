"""Partitions, tiers, canonical partition keys and capture ids.

A FINRA partition is (``week_ending``, ``tier``). The canonical key is JSON with sorted keys and
no spaces, so ``{"tier": …, "week_ending": …}`` and ``{"week_ending": …, "tier": …}`` are one key
and ``UNIQUE(domain, pipeline, partition_key)`` can never hold two rows for one partition.
Called by the queue, the pipelines, the doctor and the operator.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime

DOMAIN = "finra.otc_transparency"


class Tier(enum.StrEnum):
    NMS_TIER_1 = "NMS_TIER_1"
    NMS_TIER_2 = "NMS_TIER_2"
    OTC = "OTC"


# What FINRA and people write for each tier, folded to lower case without spaces/underscores/dashes.
_TIER_ALIASES: dict[str, Tier] = {
    "nmstier1": Tier.NMS_TIER_1,
    "tier1": Tier.NMS_TIER_1,
    "t1": Tier.NMS_TIER_1,
    "nmstier2": Tier.NMS_TIER_2,
    "tier2": Tier.NMS_TIER_2,
    "t2": Tier.NMS_TIER_2,
    "otc": Tier.OTC,
    "otce": Tier.OTC,
}


class UnknownTier(ValueError):
    def __init__(self, value: str) -> None:
        choices = ", ".join(t.value for t in Tier)
        super().__init__(f"unknown tier {value!r}; expected one of {choices}")


def _fold(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


def parse_tier(value: str) -> Tier:
    """Map a tier name or alias (``NMS Tier 1``, ``T1``, ``OTC`` …) to a :class:`Tier`."""
    tier = _TIER_ALIASES.get(_fold(value))
    if tier is None:
        raise UnknownTier(value)
    return tier


def canonical_key(partition: Mapping[str, object]) -> str:
    """Canonical JSON for a partition: sorted keys, compact separators, ASCII only."""
    return json.dumps(dict(partition), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def finra_partition(week_ending: date, tier: Tier) -> dict[str, str]:
    return {"week_ending": week_ending.isoformat(), "tier": tier.value}


def capture_id(tier: Tier, week_ending: date, captured_on: date) -> str:
    """``finra.otc_transparency:{TIER}:{week_ending}:{YYYYMMDD}`` of the capture day (UTC)."""
    return f"{DOMAIN}:{tier.value}:{week_ending.isoformat()}:{captured_on.strftime('%Y%m%d')}"


def capture_day(now: datetime) -> date:
    """The UTC calendar day a capture taken at ``now`` belongs to."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).date()


def weekly_file_name(week_ending: date, tier: Tier) -> str:
    """The name of a weekly file in a landing folder, after FINRA's own files:
    ``finra_otc_weekly_otc_20251215.csv``. The doctor, backfill and the demo look files up by it."""
    return f"finra_otc_weekly_{tier.value.lower()}_{week_ending.strftime('%Y%m%d')}.csv"
