"""The real FINRA weekly files through ingest → normalize → compute (issue 2, acceptance criterion 3;
issue 8: they are the OTC trading weeks of 2025-11-10 and 2025-11-17).

Counts are read from the files by this test (not by the product's parser) and also pinned to the
numbers in ``../shared/data/finra_otc/README.md``, so a parser that drops or invents rows fails
both ways. Each file's only date, ``lastUpdateDate``, is the day FINRA published it, 35 days after
the trading week's Monday.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier
from market_spine.core.stages import Stage
from market_spine.db.schema import normalized, raw, rejects, symbol_hhi, tier_venue_share, venue_volume
from tests.pipelines.helpers import count, data_lines, manifest, run_chain

pytestmark = pytest.mark.realdata

# file → (trading week, data rows, symbols, MPIDs), from the data folder's README.
EXPECTED = {
    "finra_otc_weekly_otc_20251215.csv": (date(2025, 11, 10), 5_328, 3_111, 9),
    "finra_otc_weekly_otc_20251222.csv": (date(2025, 11, 17), 5_192, 2_985, 9),
}
# file → the day FINRA published it (every row's lastUpdateDate, and the date in its name).
PUBLISHED = {
    "finra_otc_weekly_otc_20251215.csv": date(2025, 12, 15),
    "finra_otc_weekly_otc_20251222.csv": date(2025, 12, 22),
}


def day_after(published: date) -> datetime:
    """When the weekly job runs: the day after FINRA published the week."""
    return datetime.combine(published + timedelta(days=1), time(14, 30), tzinfo=UTC)


def _real_file(finra_files: list[Path], name: str) -> Path:
    by_name = {path.name: path for path in finra_files}
    if name not in by_name:
        pytest.skip(f"{name} is not in the real data folder")
    return by_name[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_week_through_the_chain(engine: Engine, finra_files: list[Path], name: str) -> None:
    week, expected_rows, expected_symbols, expected_mpids = EXPECTED[name]
    path = _real_file(finra_files, name)

    lines = data_lines(path)
    fields = [line.split("|") for line in lines]
    assert len(lines) == expected_rows
    assert len({f[1] for f in fields}) == expected_symbols
    assert len({f[4] for f in fields}) == expected_mpids
    published = PUBLISHED[name]
    assert {f[7] for f in fields} == {published.isoformat()}
    assert published == week + timedelta(days=35)

    now = day_after(published)
    ingest, norm, calc = run_chain(engine, path, week, Tier.OTC, now=now)
    capture = ingest.capture_id
    assert capture == f"finra.otc_transparency:OTC:{week.isoformat()}:{now:%Y%m%d}"
    assert norm.capture_id == calc.capture_id == capture

    # Raw = the file's data rows; normalized + rejects = raw.
    raw_rows = count(engine, raw, capture_id=capture)
    assert raw_rows == len(lines) == expected_rows
    assert ingest.row_count == raw_rows
    normalized_rows = count(engine, normalized, capture_id=capture)
    rejected_rows = count(engine, rejects, capture_id=capture, stage=Stage.NORMALIZED.value)
    assert normalized_rows + rejected_rows == raw_rows
    assert (norm.row_count, norm.rejected) == (normalized_rows, rejected_rows)
    assert rejected_rows == 0  # these two weeks are clean; blank-symbol weeks are tested with samples

    # Every line is stored as received, with its line number (the header is line 1).
    with engine.connect() as conn:
        stored = conn.execute(
            select(raw.c.line_number, raw.c.issue_symbol_identifier, raw.c.total_weekly_share_quantity)
            .where(raw.c.capture_id == capture)
            .order_by(raw.c.line_number)
        ).all()
    assert [r.line_number for r in stored] == list(range(2, expected_rows + 2))
    assert [(r.issue_symbol_identifier, r.total_weekly_share_quantity) for r in stored] == [
        (f[1], f[5]) for f in fields
    ]

    with engine.connect() as conn:
        venues = conn.execute(
            select(venue_volume.c.symbol, venue_volume.c.mpid, venue_volume.c.volume, venue_volume.c.share).where(
                venue_volume.c.capture_id == capture
            )
        ).all()
        hhis = conn.execute(
            select(symbol_hhi.c.symbol, symbol_hhi.c.volume, symbol_hhi.c.venue_count, symbol_hhi.c.hhi).where(
                symbol_hhi.c.capture_id == capture
            )
        ).all()
        ranks = conn.execute(
            select(
                tier_venue_share.c.mpid, tier_venue_share.c.rank, tier_venue_share.c.share, tier_venue_share.c.volume
            )
            .where(tier_venue_share.c.capture_id == capture)
            .order_by(tier_venue_share.c.rank)
        ).all()

    # Venue volume: one row per (symbol, MPID) of the file, volumes as in the file.
    assert len(venues) == calc.row_count == expected_rows
    assert {(v.symbol, v.mpid): v.volume for v in venues} == {(f[1], f[4]): int(f[5]) for f in fields}

    # Shares sum to 1 per symbol within 1e-9.
    per_symbol: dict[str, list[float]] = defaultdict(list)
    for v in venues:
        assert v.share is not None and 0.0 <= v.share <= 1.0
        per_symbol[v.symbol].append(v.share)
    assert len(per_symbol) == expected_symbols
    worst = max(abs(sum(shares) - 1.0) for shares in per_symbol.values())
    assert worst <= 1e-9

    # 0 ≤ HHI ≤ 1; a single-venue symbol has HHI = 1; venue counts match the venue rows.
    assert len(hhis) == expected_symbols
    single = [h for h in hhis if h.venue_count == 1]
    assert single, "the real weeks have single-venue symbols"
    for h in hhis:
        assert h.hhi is not None and 0.0 <= h.hhi <= 1.0
        assert h.venue_count == len(per_symbol[h.symbol])
        assert h.hhi == pytest.approx(sum(s * s for s in per_symbol[h.symbol]), abs=1e-12)
    assert all(h.hhi == 1.0 for h in single)
    assert all(h.hhi < 1.0 for h in hhis if h.venue_count > 1)

    # Tier venue share: ranks exactly 1..N over the N MPIDs, by volume; shares sum to 1.
    assert [r.rank for r in ranks] == list(range(1, expected_mpids + 1))
    assert len({r.mpid for r in ranks}) == expected_mpids
    assert [r.volume for r in ranks] == sorted((r.volume for r in ranks), reverse=True)
    assert abs(sum(r.share for r in ranks) - 1.0) <= 1e-9
    assert ranks[0].mpid == "OTCN"  # README: OTCN carries roughly 80% of the tier's shares
    assert 0.7 <= ranks[0].share <= 0.9

    # The manifest records each stage of this capture with its row count.
    assert manifest(engine) == {
        "RAW": (expected_rows, capture),
        "NORMALIZED": (expected_rows, capture),
        "CALC": (expected_rows, capture),
    }


def test_both_real_weeks_coexist_as_partitions(engine: Engine, finra_files: list[Path]) -> None:
    for name, (week, _, _, _) in EXPECTED.items():
        run_chain(engine, _real_file(finra_files, name), week, Tier.OTC, now=day_after(PUBLISHED[name]))
    for week, expected_rows, expected_symbols, _ in EXPECTED.values():
        assert count(engine, raw, week=week) == expected_rows
        assert count(engine, symbol_hhi, week=week) == expected_symbols


def test_top_concentrated_ranks_by_hhi_and_can_leave_out_single_venue_symbols(
    engine: Engine, finra_files: list[Path]
) -> None:
    from market_spine.services.query import HhiSort, hhi

    name = sorted(EXPECTED)[0]
    week = EXPECTED[name][0]
    run_chain(engine, _real_file(finra_files, name), week, Tier.OTC, now=day_after(PUBLISHED[name]))
    everything = hhi(engine, week, Tier.OTC)
    multi = [r for r in everything if r["venue_count"] >= 2]
    top = hhi(engine, week, Tier.OTC, sort=HhiSort.HHI, limit=20, min_venues=2)
    assert len(top) == 20
    assert all(r["venue_count"] >= 2 for r in top)
    assert [r["hhi"] for r in top] == sorted((r["hhi"] for r in top), reverse=True)
    assert top[0]["hhi"] == max(r["hhi"] for r in multi)
    assert hhi(engine, week, Tier.OTC, sort=HhiSort.HHI, limit=1)[0]["hhi"] == 1.0  # single venues lead otherwise
