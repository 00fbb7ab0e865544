"""Partitions, tiers, canonical partition keys and capture ids.

A FINRA partition is (``week``, ``tier``): ``week`` is FINRA's ``weekStartDate``, the Monday of
the trading week the rows describe (never the day FINRA published them, see ``core.calendar``).
The canonical key is JSON with sorted keys and no spaces, so ``{"tier": …, "week": …}`` and
``{"week": …, "tier": …}`` are one key and ``UNIQUE(domain, pipeline, partition_key)`` can never
hold two rows for one partition. Tiers keep the product's names and map to FINRA's
``tierIdentifier`` here, in one place. Called by the queue, the pipelines, the doctor, the FINRA
adapters and the operator.
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


# FINRA's ``tierIdentifier`` for each tier (the Query API's filter values and partition field).
FINRA_TIER_IDS: dict[Tier, str] = {Tier.NMS_TIER_1: "T1", Tier.NMS_TIER_2: "T2", Tier.OTC: "OTCE"}

# What FINRA and people write for each tier, folded to lower case without spaces/underscores/dashes:
# the product's names, FINRA's tier identifiers and the files' tierDescription.
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
        choices = ", ".join(f"{t.value} ({FINRA_TIER_IDS[t]})" for t in Tier)
        super().__init__(f"unknown tier {value!r}; expected one of {choices}")


def _fold(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


def tier_aliases(tier: Tier) -> frozenset[str]:
    """The folded spellings (lower case, letters and digits only) that name ``tier``: what
    normalization's SQL compares a row's folded ``tierDescription`` with."""
    return frozenset(alias for alias, named in _TIER_ALIASES.items() if named is tier)


def parse_tier(value: str) -> Tier:
    """Map a tier name, FINRA code or alias (``NMS Tier 1``, ``T1``, ``OTCE`` …) to a :class:`Tier`."""
    tier = _TIER_ALIASES.get(_fold(value))
    if tier is None:
        raise UnknownTier(value)
    return tier


def canonical_key(partition: Mapping[str, object]) -> str:
    """Canonical JSON for a partition: sorted keys, compact separators, ASCII only."""
    return json.dumps(dict(partition), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def finra_partition(week: date, tier: Tier) -> dict[str, str]:
    """The partition as stored in ``partition_key`` columns: ``{"tier": "OTC", "week": "2025-11-10"}``."""
    return {"tier": tier.value, "week": week.isoformat()}


def capture_id(tier: Tier, week: date, captured_on: date) -> str:
    """``finra.otc_transparency:{TIER}:{week}:{YYYYMMDD}`` of the capture day (UTC)."""
    return f"{DOMAIN}:{tier.value}:{week.isoformat()}:{captured_on.strftime('%Y%m%d')}"


def capture_day(now: datetime) -> date:
    """The UTC calendar day a capture taken at ``now`` belongs to."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).date()


def weekly_file_name(published_on: date, tier: Tier) -> str:
    """The name of a weekly file in a landing folder, after FINRA's own downloads, which carry the
    day FINRA published the file: ``finra_otc_weekly_otc_20251215.csv`` is the OTC week of
    2025-11-10, first published on 2025-12-15. Callers get that day from ``core.calendar``'s
    :func:`~market_spine.core.calendar.first_publication`."""
    return f"finra_otc_weekly_{tier.value.lower()}_{published_on.strftime('%Y%m%d')}.csv"
