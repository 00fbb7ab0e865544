"""Venue analytics formulas (SPEC §4 compute_week): volumes, shares, HHI, tier shares and ranks."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest

from market_spine.core.analytics import (
    SymbolConcentration,
    TierVenueShare,
    VenueShare,
    VenueVolume,
    hhi,
    symbol_concentration,
    tier_venue_shares,
    venue_shares,
    venue_volumes,
)

# --- venue_volumes ------------------------------------------------------------------------------------


def test_venue_volumes_sums_duplicates_and_sorts() -> None:
    rows = [
        ("MSFT", "NITE", 5, 1),
        ("AAPL", "NITE", 100, 2),
        ("AAPL", "CDEL", 10, 1),
        ("AAPL", "NITE", 50, 1),
        ("AAPL", "NITE", 0, 0),
    ]
    assert venue_volumes(rows) == [
        VenueVolume("AAPL", "CDEL", 10, 1),
        VenueVolume("AAPL", "NITE", 150, 3),
        VenueVolume("MSFT", "NITE", 5, 1),
    ]


def test_venue_volumes_keeps_zero_rows_and_empty_input() -> None:
    assert venue_volumes([("ZERO", "A", 0, 0)]) == [VenueVolume("ZERO", "A", 0, 0)]
    assert venue_volumes([]) == []
    assert venue_volumes(iter([("X", "A", 1, 1)])) == [VenueVolume("X", "A", 1, 1)]


def test_venue_volumes_exact_for_large_integers() -> None:
    big = 10**15 + 1
    assert venue_volumes([("X", "A", big, 1), ("X", "A", big, 1)]) == [VenueVolume("X", "A", 2 * big, 2)]


# --- venue_shares and HHI: hand-computed examples --------------------------------------------------------------


def test_two_venues_75_25() -> None:
    volumes = [VenueVolume("AAPL", "CDEL", 75, 3), VenueVolume("AAPL", "NITE", 25, 1)]
    shares = venue_shares(volumes)
    assert shares == [VenueShare("AAPL", "CDEL", 75, 0.75), VenueShare("AAPL", "NITE", 25, 0.25)]
    assert symbol_concentration(shares) == [SymbolConcentration("AAPL", 100, 2, 0.625)]


def test_single_venue() -> None:
    shares = venue_shares([VenueVolume("GME", "NITE", 12345, 9)])
    assert shares == [VenueShare("GME", "NITE", 12345, 1.0)]
    assert symbol_concentration(shares) == [SymbolConcentration("GME", 12345, 1, 1.0)]


def test_zero_volume_symbol_has_no_share_and_no_hhi() -> None:
    volumes = [VenueVolume("ZZZ", "A", 0, 0), VenueVolume("ZZZ", "B", 0, 0)]
    shares = venue_shares(volumes)
    assert shares == [VenueShare("ZZZ", "A", 0, None), VenueShare("ZZZ", "B", 0, None)]
    assert symbol_concentration(shares) == [SymbolConcentration("ZZZ", 0, 2, None)]


def test_zero_volume_single_venue() -> None:
    shares = venue_shares([VenueVolume("ZZZ", "A", 0, 0)])
    assert shares == [VenueShare("ZZZ", "A", 0, None)]
    assert symbol_concentration(shares) == [SymbolConcentration("ZZZ", 0, 1, None)]


def test_zero_symbol_does_not_affect_others() -> None:
    volumes = venue_volumes([("AAA", "X", 30, 1), ("AAA", "Y", 10, 1), ("ZZZ", "X", 0, 0)])
    shares = venue_shares(volumes)
    assert shares == [
        VenueShare("AAA", "X", 30, 0.75),
        VenueShare("AAA", "Y", 10, 0.25),
        VenueShare("ZZZ", "X", 0, None),
    ]
    assert symbol_concentration(shares) == [
        SymbolConcentration("AAA", 40, 2, 0.625),
        SymbolConcentration("ZZZ", 0, 1, None),
    ]


def test_a_zero_venue_within_a_traded_symbol() -> None:
    shares = venue_shares([VenueVolume("S", "A", 0, 0), VenueVolume("S", "B", 40, 2)])
    assert shares == [VenueShare("S", "A", 0, 0.0), VenueShare("S", "B", 40, 1.0)]
    # The idle venue still counts as a venue; it adds nothing to the HHI.
    assert symbol_concentration(shares) == [SymbolConcentration("S", 40, 2, 1.0)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 100])
def test_equal_split_hhi_is_one_over_n(n: int) -> None:
    shares = venue_shares([VenueVolume("S", f"V{i:03d}", 1000, 1) for i in range(n)])
    assert all(math.isclose(s.share or 0, 1 / n, rel_tol=1e-12) for s in shares)
    (conc,) = symbol_concentration(shares)
    assert conc.venue_count == n
    assert conc.total_volume == 1000 * n
    assert conc.hhi is not None and math.isclose(conc.hhi, 1 / n, rel_tol=1e-12)


def test_three_venue_hand_example() -> None:
    # 50/30/20 → HHI = 0.25 + 0.09 + 0.04 = 0.38
    shares = venue_shares([VenueVolume("S", "A", 500, 1), VenueVolume("S", "B", 300, 1), VenueVolume("S", "C", 200, 1)])
    assert [s.share for s in shares] == [0.5, 0.3, 0.2]
    (conc,) = symbol_concentration(shares)
    assert conc.hhi == pytest.approx(0.38, abs=1e-15)


def test_venue_shares_grouped_and_sorted_by_symbol() -> None:
    volumes = [VenueVolume("B", "X", 1, 1), VenueVolume("A", "X", 1, 1), VenueVolume("B", "Y", 3, 1)]
    shares = venue_shares(volumes)
    assert [s.symbol for s in shares] == ["A", "B", "B"]
    assert {(s.symbol, s.mpid): s.share for s in shares} == {("A", "X"): 1.0, ("B", "X"): 0.25, ("B", "Y"): 0.75}


def test_empty_inputs() -> None:
    assert venue_shares([]) == []
    assert symbol_concentration([]) == []
    assert tier_venue_shares([]) == []


@pytest.mark.parametrize(
    ("shares", "expected"),
    [([1.0], 1.0), ([0.5, 0.5], 0.5), ([0.75, 0.25], 0.625), ([0.0, 1.0], 1.0), ([], 0.0)],
)
def test_hhi(shares: list[float], expected: float) -> None:
    assert hhi(shares) == expected
    assert hhi(iter(shares)) == expected


# --- randomised (seeded) invariants over 1,000 symbols -------------------------------------------------------


def _random_volumes(seed: int, symbols: int = 1000) -> list[VenueVolume]:
    rng = random.Random(seed)
    rows: list[tuple[str, str, int, int]] = []
    for i in range(symbols):
        venues = rng.randint(1, 40)
        for mpid in rng.sample([f"M{j:03d}" for j in range(60)], venues):
            scale = rng.choice([10, 1_000, 1_000_000, 10**10])
            rows.append((f"SYM{i:04d}", mpid, rng.randint(0, scale), rng.randint(0, 500)))
    return venue_volumes(rows)


@pytest.mark.parametrize("seed", [0, 1, 20251215])
def test_shares_sum_to_one_on_1000_random_symbols(seed: int) -> None:
    volumes = _random_volumes(seed)
    shares = venue_shares(volumes)
    assert len(shares) == len(volumes)
    by_symbol: dict[str, list[VenueShare]] = defaultdict(list)
    for s in shares:
        by_symbol[s.symbol].append(s)
    assert len(by_symbol) == 1000
    concentration = {c.symbol: c for c in symbol_concentration(shares)}
    assert len(concentration) == 1000
    for symbol, venues in by_symbol.items():
        total = sum(v.volume for v in venues)
        conc = concentration[symbol]
        assert conc.total_volume == total
        assert conc.venue_count == len(venues)
        if total == 0:
            assert all(v.share is None for v in venues)
            assert conc.hhi is None
            continue
        values = [v.share for v in venues]
        assert all(s is not None and 0.0 <= s <= 1.0 for s in values)
        assert abs(math.fsum(s for s in values if s is not None) - 1.0) <= 1e-9
        assert abs(sum(s for s in values if s is not None) - 1.0) <= 1e-9
        assert conc.hhi is not None
        assert 1 / len(venues) - 1e-12 <= conc.hhi <= 1.0 + 1e-12
        assert conc.hhi == pytest.approx(sum((v.volume / total) ** 2 for v in venues), rel=1e-12)


def test_random_set_contains_a_zero_total_symbol_check() -> None:
    # Make sure the zero-total branch is exercised alongside the random symbols.
    volumes = [*_random_volumes(5, symbols=50), VenueVolume("ZZZZ", "M000", 0, 0), VenueVolume("ZZZZ", "M001", 0, 0)]
    conc = {c.symbol: c for c in symbol_concentration(venue_shares(volumes))}
    assert conc["ZZZZ"] == SymbolConcentration("ZZZZ", 0, 2, None)
    assert all(c.hhi is not None for s, c in conc.items() if s != "ZZZZ" and c.total_volume > 0)


# --- tier venue shares and ranks ----------------------------------------------------------------------------


def test_tier_venue_shares_ranks_with_ties_broken_by_mpid() -> None:
    volumes = [
        VenueVolume("AAPL", "NITE", 200, 1),
        VenueVolume("MSFT", "NITE", 100, 1),
        VenueVolume("AAPL", "CDEL", 300, 1),
        VenueVolume("AAPL", "ZZZZ", 100, 1),
        VenueVolume("MSFT", "ABCD", 100, 1),
    ]
    assert tier_venue_shares(volumes) == [
        TierVenueShare("CDEL", 300, 0.375, 1),  # tie at 300 with NITE: CDEL < NITE
        TierVenueShare("NITE", 300, 0.375, 2),
        TierVenueShare("ABCD", 100, 0.125, 3),  # tie at 100: ABCD < ZZZZ
        TierVenueShare("ZZZZ", 100, 0.125, 4),
    ]


def test_tier_ranks_are_1_to_n_and_shares_sum_to_one() -> None:
    volumes = _random_volumes(7)
    result = tier_venue_shares(volumes)
    assert [r.rank for r in result] == list(range(1, len(result) + 1))
    assert len({r.mpid for r in result}) == len(result)
    keys = [(-r.volume, r.mpid) for r in result]
    assert keys == sorted(keys)
    assert abs(math.fsum(r.share for r in result if r.share is not None) - 1.0) <= 1e-9
    per_mpid: dict[str, int] = defaultdict(int)
    for v in volumes:
        per_mpid[v.mpid] += v.volume
    assert {r.mpid: r.volume for r in result} == per_mpid


def test_tier_zero_total_has_no_shares_but_still_ranks() -> None:
    volumes = [VenueVolume("A", "NITE", 0, 0), VenueVolume("B", "CDEL", 0, 0)]
    assert tier_venue_shares(volumes) == [
        TierVenueShare("CDEL", 0, None, 1),
        TierVenueShare("NITE", 0, None, 2),
    ]


def test_tier_single_venue() -> None:
    assert tier_venue_shares([VenueVolume("A", "NITE", 5, 1), VenueVolume("B", "NITE", 5, 1)]) == [
        TierVenueShare("NITE", 10, 1.0, 1)
    ]


def test_full_pipeline_from_rows() -> None:
    rows = [("AAPL", "CDEL", 60, 2), ("AAPL", "CDEL", 15, 1), ("AAPL", "NITE", 25, 1)]
    volumes = venue_volumes(rows)
    shares = venue_shares(volumes)
    assert [(s.mpid, s.share) for s in shares] == [("CDEL", 0.75), ("NITE", 0.25)]
    assert symbol_concentration(shares)[0].hhi == 0.625
    assert [(t.mpid, t.rank) for t in tier_venue_shares(volumes)] == [("CDEL", 1), ("NITE", 2)]
