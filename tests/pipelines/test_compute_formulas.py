"""compute_week's SQL against the pure formulas of ``core.analytics``: the same week gives the same
venue volumes, shares, HHI and tier ranks, including a venue reported on two rows (summed), a
symbol whose venues all report zero shares (NULL share and HHI) and a tie in the tier ranking."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from market_spine.core.analytics import symbol_concentration, tier_venue_shares, venue_shares, venue_volumes
from market_spine.core.partitions import Tier
from market_spine.db.schema import normalized, symbol_hhi, tier_venue_share, venue_volume
from market_spine.finra.sample import render_records, sample_records
from tests.pipelines.helpers import run_chain

WEEK = date(2025, 11, 24)
TIER = Tier.NMS_TIER_1


def test_compute_matches_the_core_formulas(engine: Engine, tmp_path: Path) -> None:
    records = sample_records(WEEK, TIER, symbols=60, seed=11)
    # A venue on two rows (other numbers: not a duplicate, summed), a symbol with zero volume at
    # all its venues, and two MPIDs with the same tier volume (ranked by MPID).
    records.append({**records[0], "totalWeeklyShareQuantity": "1000", "totalWeeklyTradeCount": "3"})
    zero = records[5]["issueSymbolIdentifier"]
    records = [
        {**r, "totalWeeklyShareQuantity": "0", "totalWeeklyTradeCount": "0"}
        if r["issueSymbolIdentifier"] == zero
        else r
        for r in records
    ]
    records += [
        {**records[1], "issueSymbolIdentifier": "TIEA", "MPID": "AAAA", "totalWeeklyShareQuantity": "777"},
        {**records[1], "issueSymbolIdentifier": "TIEB", "MPID": "AAAB", "totalWeeklyShareQuantity": "777"},
    ]
    path = tmp_path / "week.csv"
    path.write_text(render_records(records), encoding="utf-8")
    run_chain(engine, path, WEEK, TIER)

    with engine.connect() as conn:
        rows = [
            tuple(r)
            for r in conn.execute(
                select(normalized.c.symbol, normalized.c.mpid, normalized.c.share_quantity, normalized.c.trade_count)
            )
        ]
        venues = {(r.symbol, r.mpid): (r.volume, r.trade_count, r.share) for r in conn.execute(select(venue_volume))}
        hhis = {r.symbol: (r.volume, r.venue_count, r.hhi) for r in conn.execute(select(symbol_hhi))}
        ranks = [
            (r.rank, r.mpid, r.volume, r.share)
            for r in conn.execute(select(tier_venue_share).order_by(tier_venue_share.c.rank))
        ]

    volumes = venue_volumes(rows)
    shares = venue_shares(volumes)
    trades = {(v.symbol, v.mpid): v.trade_count for v in volumes}
    assert set(venues) == {(s.symbol, s.mpid) for s in shares}
    for s in shares:
        volume, count, share = venues[s.symbol, s.mpid]
        assert (volume, count) == (s.volume, trades[s.symbol, s.mpid])
        assert share == s.share  # the same division of the same whole numbers: exactly equal
    expected_hhi = {c.symbol: c for c in symbol_concentration(shares)}
    assert set(hhis) == set(expected_hhi)
    for symbol, (volume, venue_count, hhi) in hhis.items():
        c = expected_hhi[symbol]
        assert (volume, venue_count) == (c.total_volume, c.venue_count)
        assert hhi == (None if c.hhi is None else pytest.approx(c.hhi, abs=1e-12))
    assert hhis[zero][2] is None
    assert all(venues[key][2] is None for key in venues if key[0] == zero)
    assert ranks == [(t.rank, t.mpid, t.volume, pytest.approx(t.share, abs=1e-15)) for t in tier_venue_shares(volumes)]
    assert [mpid for _, mpid, volume, _ in ranks if volume == 777] == ["AAAA", "AAAB"]
