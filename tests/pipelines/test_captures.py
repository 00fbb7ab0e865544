"""Captures (SPEC §4): replay replaces, a restatement coexists, latest shows the newest capture and
as-of returns an older one, checked through the product's query service (``spine query``)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE
from market_spine.db.schema import normalized, raw, symbol_hhi, venue_volume
from market_spine.errors import NotFound
from market_spine.finra.files import HEADER
from market_spine.finra.sample import render_records, sample_records, write_sample_week
from market_spine.services import query
from tests.pipelines.helpers import NOW, count, manifest, run, run_chain

WEEK = date(2025, 11, 24)  # an NMS Tier 1 trading week, first published on 2025-12-15
TIER = Tier.NMS_TIER_1
DAY1 = NOW  # 2025-12-16
DAY2 = datetime(2025, 12, 17, 9, 0, tzinfo=UTC)
CAPTURE1 = "finra.otc_transparency:NMS_TIER_1:2025-11-24:20251216"
CAPTURE2 = "finra.otc_transparency:NMS_TIER_1:2025-11-24:20251217"


@pytest.fixture
def monday(tmp_path: Path) -> Path:
    return write_sample_week(tmp_path / "monday.csv", WEEK, TIER, symbols=40, seed=3)


@pytest.fixture
def restated(tmp_path: Path) -> tuple[Path, str, str]:
    """FINRA's correction of the same week: the first symbol dropped, the second's volume changed."""
    records = sample_records(WEEK, TIER, symbols=40, seed=3)
    dropped = records[0]["issueSymbolIdentifier"]
    kept = [r for r in records if r["issueSymbolIdentifier"] != dropped]
    changed = kept[0]["issueSymbolIdentifier"]
    # FINRA stamps the row it corrected with the correction day; the others keep the first publication.
    kept[0] = {**kept[0], "totalWeeklyShareQuantity": "123456789", "lastUpdateDate": "2025-12-16"}
    path = tmp_path / "tuesday.csv"
    path.write_text(render_records(kept), encoding="utf-8")
    return path, dropped, changed


def test_replay_of_the_same_capture_replaces_it(engine: Engine, monday: Path) -> None:
    rows = len(sample_records(WEEK, TIER, symbols=40, seed=3))
    first = run_chain(engine, monday, WEEK, TIER, now=DAY1)
    later_same_day = DAY1.replace(hour=18)
    second = run_chain(engine, monday, WEEK, TIER, now=later_same_day)

    assert [r.capture_id for r in first] == [r.capture_id for r in second] == [CAPTURE1] * 3
    assert count(engine, raw) == rows
    assert count(engine, normalized) == rows
    assert count(engine, venue_volume) == rows
    captures = query.captures(engine, WEEK, TIER)
    assert [c["capture_id"] for c in captures] == [CAPTURE1]
    assert captures[0]["raw_rows"] == captures[0]["normalized_rows"] == rows
    assert captures[0]["stages"] == "RAW,NORMALIZED,CALC"
    # The replay's rows carry the replay's time: they replaced the first run's.
    with engine.connect() as conn:
        stamps = set(conn.execute(select(raw.c.captured_at).distinct()).scalars())
    assert stamps == {later_same_day}
    assert manifest(engine) == {stage: (rows, CAPTURE1) for stage in ("RAW", "NORMALIZED", "CALC")}


def test_restatement_coexists_and_latest_shows_it(
    engine: Engine, monday: Path, restated: tuple[Path, str, str]
) -> None:
    tuesday, dropped, changed = restated
    rows = len(sample_records(WEEK, TIER, symbols=40, seed=3))
    run_chain(engine, monday, WEEK, TIER, now=DAY1)
    results = run_chain(engine, tuesday, WEEK, TIER, now=DAY2)
    assert results[0].capture_id == CAPTURE2

    # Both captures are stored.
    captures = query.captures(engine, WEEK, TIER)
    assert [c["capture_id"] for c in captures] == [CAPTURE2, CAPTURE1]
    assert [c["latest"] for c in captures] == [True, False]
    assert captures[1]["raw_rows"] == rows
    assert captures[0]["raw_rows"] == rows - 1
    # Each capture records the FINRA publication dates its rows carry: the correction is later.
    assert (captures[1]["published_from"], captures[1]["published_to"]) == (date(2025, 12, 15), date(2025, 12, 15))
    assert (captures[0]["published_from"], captures[0]["published_to"]) == (date(2025, 12, 15), date(2025, 12, 16))
    assert count(engine, raw, capture_id=CAPTURE1) == rows
    assert count(engine, raw, capture_id=CAPTURE2) == rows - 1

    # Latest: only the restatement; the dropped symbol is gone, the corrected volume shows.
    latest = query.venue_share(engine, WEEK, TIER)
    assert {r["capture_id"] for r in latest} == {CAPTURE2}
    assert len(latest) == rows - 1
    assert dropped not in {r["symbol"] for r in latest}
    assert query.venue_share(engine, WEEK, TIER, symbol=dropped) == []
    assert query.hhi(engine, WEEK, TIER, symbol=dropped) == []
    corrected = [r for r in latest if r["symbol"] == changed and r["volume"] == 123456789]
    assert len(corrected) == 1

    # As of the first capture: the old rows, the dropped symbol included.
    as_of = query.venue_share(engine, WEEK, TIER, capture_id=CAPTURE1)
    assert {r["capture_id"] for r in as_of} == {CAPTURE1}
    assert len(as_of) == rows
    old_hhi = query.hhi(engine, WEEK, TIER, symbol=dropped, capture_id=CAPTURE1)
    assert [r["symbol"] for r in old_hhi] == [dropped]
    # Symbols are matched as published: in FINRA's symbology case can tell two securities apart.
    assert query.hhi(engine, WEEK, TIER, symbol=dropped.lower(), capture_id=CAPTURE1) == []
    assert 0.0 < old_hhi[0]["hhi"] <= 1.0
    assert all(r["volume"] != 123456789 for r in as_of)

    # The latest views of every table agree on the capture.
    assert {r["capture_id"] for r in query.hhi(engine, WEEK, TIER)} == {CAPTURE2}
    assert {r["capture_id"] for r in query.tier_share(engine, WEEK, TIER)} == {CAPTURE2}
    assert manifest(engine)["CALC"] == (rows - 1, CAPTURE2)


def test_capture_date_recreates_an_earlier_days_capture(
    engine: Engine, monday: Path, restated: tuple[Path, str, str]
) -> None:
    tuesday, _, _ = restated
    run_chain(engine, monday, WEEK, TIER, now=DAY1)
    run_chain(engine, tuesday, WEEK, TIER, now=DAY2)
    # Two days later, re-create Monday's capture (e.g. after a fix): it replaces CAPTURE1 only,
    # stamped at midnight of its own day, so the restatement stays the latest.
    result = run(
        engine, INGEST, WEEK, TIER, params={"file": str(monday)}, now=DAY2.replace(day=19), capture_date=DAY1.date()
    )
    assert result.capture_id == CAPTURE1
    with engine.connect() as conn:
        stamps = set(conn.execute(select(raw.c.captured_at).where(raw.c.capture_id == CAPTURE1)).scalars())
    assert stamps == {datetime(2025, 12, 16, tzinfo=UTC)}
    assert [c["capture_id"] for c in query.captures(engine, WEEK, TIER)] == [CAPTURE2, CAPTURE1]
    assert {r["capture_id"] for r in query.venue_share(engine, WEEK, TIER)} == {CAPTURE2}


def test_downstream_stages_default_to_the_latest_capture(
    engine: Engine, monday: Path, restated: tuple[Path, str, str]
) -> None:
    tuesday, _, _ = restated
    run_chain(engine, monday, WEEK, TIER, now=DAY1)
    run(engine, INGEST, WEEK, TIER, params={"file": str(tuesday)}, now=DAY2)
    # The restatement is ingested but not normalized: compute refuses rather than silently
    # recomputing Monday's numbers.
    with pytest.raises(NotFound, match=f"capture {CAPTURE2} has not been normalized; run normalize first"):
        run(engine, COMPUTE, WEEK, TIER, now=DAY2)
    assert run(engine, NORMALIZE, WEEK, TIER, now=DAY2).capture_id == CAPTURE2
    assert run(engine, COMPUTE, WEEK, TIER, now=DAY2).capture_id == CAPTURE2
    # An explicit capture id still recomputes an older capture, replacing only its rows.
    before = count(engine, symbol_hhi, capture_id=CAPTURE1)
    assert run(engine, COMPUTE, WEEK, TIER, params={"capture_id": CAPTURE1}, now=DAY2).capture_id == CAPTURE1
    assert count(engine, symbol_hhi, capture_id=CAPTURE1) == before


def test_stages_without_raw_data_say_what_to_run(engine: Engine) -> None:
    with pytest.raises(NotFound, match="no RAW capture for week 2025-11-24 tier NMS_TIER_1; run ingest first"):
        run(engine, NORMALIZE, WEEK, TIER)
    with pytest.raises(NotFound, match="no RAW capture for week 2025-11-24 tier NMS_TIER_1; run ingest first"):
        run(engine, COMPUTE, WEEK, TIER)
    with pytest.raises(NotFound, match="no RAW capture 'nope'"):
        run(engine, NORMALIZE, WEEK, TIER, params={"capture_id": "nope"})


def test_as_of_an_unknown_or_foreign_capture_is_not_found(engine: Engine, monday: Path) -> None:
    run_chain(engine, monday, WEEK, TIER)
    unknown = "finra.otc_transparency:NMS_TIER_1:2025-11-24:20240101"
    with pytest.raises(NotFound, match=re.escape(f"no capture {unknown!r}")):
        query.venue_share(engine, WEEK, TIER, capture_id=unknown)
    with pytest.raises(NotFound, match="is for week 2025-11-24 tier NMS_TIER_1, not week 2025-11-24 tier NMS_TIER_2"):
        query.hhi(engine, WEEK, Tier.NMS_TIER_2, capture_id=CAPTURE1)
    # Latest of a partition with no data is empty, not an error.
    assert query.venue_share(engine, date(2025, 11, 17), TIER) == []
    assert query.captures(engine, date(2025, 11, 17), TIER) == []


def test_hhi_sorted_by_hhi_orders_by_hhi_then_volume(engine: Engine, monday: Path) -> None:
    run_chain(engine, monday, WEEK, TIER)
    everything = query.hhi(engine, WEEK, TIER)
    top = query.hhi(engine, WEEK, TIER, sort=query.HhiSort.HHI, limit=5)
    expected = sorted(everything, key=lambda r: (-r["hhi"], -r["volume"], r["symbol"]))[:5]
    assert [r["symbol"] for r in top] == [r["symbol"] for r in expected]
    assert set(top[0]) >= {"symbol", "hhi", "venue_count", "volume", "capture_id"}


def test_nms_tier_2_sample_week_runs_the_chain(engine: Engine, tmp_path: Path) -> None:
    week = date(2025, 11, 10)  # Tier 2 is published 35 days after the week: on 2025-12-15
    path = write_sample_week(tmp_path, week, Tier.NMS_TIER_2, symbols=60, seed=11)
    assert path.name == "finra_otc_weekly_nms_tier_2_20251215.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == "|".join(HEADER)
    ingest, norm, calc = run_chain(engine, path, week, Tier.NMS_TIER_2)
    assert ingest.row_count == norm.row_count == calc.row_count == len(path.read_text().splitlines()) - 1
    assert norm.rejected == 0
    assert len(query.hhi(engine, week, Tier.NMS_TIER_2)) == 60
