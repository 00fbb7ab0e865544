"""``--week latest`` (what the chart's enqueue CronJobs run): per tier, the newest trading week
FINRA has published by the run day, on a fixed clock (acceptance criterion 5 of issue 8)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"


def _enqueue_latest(spine: Spine, now: datetime) -> dict[str, str]:
    """Run the CronJobs' command for every tier at ``now``; return tier → enqueued week."""
    spine.now = now
    for tier in ("NMS_TIER_1", "NMS_TIER_2", "OTC"):
        # The chart's args: work enqueue <pipeline> --week latest --tier <TIER> --source finra-api --chain
        result = spine(
            "work", "enqueue", INGEST, "--week", "latest", "--tier", tier, "--source", "finra-api", "--chain"
        )
        assert result.code == 0, result.err
        assert result.err.startswith(f"--week latest: {tier} week ")
    listed = spine("work", "list", "--format", "json").json()
    return {item["tier"]: item["week"] for item in listed}


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # An ordinary Tuesday run: Monday 2025-12-15 published Tier 1's week of 2025-11-24 and the
        # Tier 2 / OTC week of 2025-11-10.
        (
            datetime(2025, 12, 16, 6, 0, tzinfo=UTC),
            {"NMS_TIER_1": "2025-11-24", "NMS_TIER_2": "2025-11-10", "OTC": "2025-11-10"},
        ),
        # Martin Luther King Jr. Day, Monday 2026-01-19: FINRA publishes on the Tuesday, so on the
        # Monday the newest weeks are still the previous ones …
        (
            datetime(2026, 1, 19, 23, 0, tzinfo=UTC),
            {"NMS_TIER_1": "2025-12-22", "NMS_TIER_2": "2025-12-08", "OTC": "2025-12-08"},
        ),
        # … and on the Tuesday they are the weeks published that day.
        (
            datetime(2026, 1, 20, 6, 0, tzinfo=UTC),
            {"NMS_TIER_1": "2025-12-29", "NMS_TIER_2": "2025-12-15", "OTC": "2025-12-15"},
        ),
    ],
)
def test_week_latest_is_each_tiers_newest_published_week(spine: Spine, now: datetime, expected: dict[str, str]) -> None:
    assert _enqueue_latest(spine, now) == expected


def test_week_latest_says_which_week_it_chose(spine: Spine) -> None:
    spine.now = datetime(2025, 12, 16, 6, 0, tzinfo=UTC)
    result = spine("work", "enqueue", INGEST, "--week-ending", "latest", "--tier", "OTCE", "--source", "finra-api")
    assert result.code == 0, result.err
    assert result.err == (
        "--week-ending latest: OTC week 2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14), "
        "published by FINRA on 2025-12-15\n"
    )
    assert result.out.startswith("enqueued ingest-week-2025-11-10-otc-")
