"""Venue analytics formulas: venue volume, venue share, HHI, tier venue share and rank.

Pure functions over plain rows; ``pipelines.compute`` feeds them normalized rows and bulk-loads
what they return. Shares are floats: for a symbol, the shares are each venue's volume divided by
the symbol's total, so they sum to 1 within floating-point error (well under 1e-9).

Zero totals: a symbol whose venues all report 0 shares has no defined market share. Its venue
shares and its HHI are ``None`` (NULL in SQL), never a division by zero and never a made-up 1/n.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class VenueVolume:
    symbol: str
    mpid: str
    volume: int
    trade_count: int


@dataclass(frozen=True)
class VenueShare:
    symbol: str
    mpid: str
    volume: int
    share: float | None


@dataclass(frozen=True)
class SymbolConcentration:
    symbol: str
    total_volume: int
    venue_count: int
    hhi: float | None


@dataclass(frozen=True)
class TierVenueShare:
    mpid: str
    volume: int
    share: float | None
    rank: int


def venue_volumes(rows: Iterable[tuple[str, str, int, int]]) -> list[VenueVolume]:
    """Sum (symbol, mpid, shares, trades) rows per (symbol, mpid); sorted by symbol then mpid."""
    volume: dict[tuple[str, str], int] = defaultdict(int)
    trades: dict[tuple[str, str], int] = defaultdict(int)
    for symbol, mpid, shares, count in rows:
        volume[(symbol, mpid)] += shares
        trades[(symbol, mpid)] += count
    return [VenueVolume(s, m, volume[(s, m)], trades[(s, m)]) for (s, m) in sorted(volume)]


def venue_shares(volumes: Iterable[VenueVolume]) -> list[VenueShare]:
    """Each venue's share of its symbol's volume."""
    by_symbol: dict[str, list[VenueVolume]] = defaultdict(list)
    for v in volumes:
        by_symbol[v.symbol].append(v)
    out: list[VenueShare] = []
    for symbol in sorted(by_symbol):
        venues = by_symbol[symbol]
        total = sum(v.volume for v in venues)
        for v in venues:
            out.append(VenueShare(symbol, v.mpid, v.volume, v.volume / total if total else None))
    return out


def hhi(shares: Iterable[float]) -> float:
    """Herfindahl–Hirschman index on shares in [0, 1]: the sum of squared shares, in [0, 1]."""
    return sum(s * s for s in shares)


def symbol_concentration(shares: Iterable[VenueShare]) -> list[SymbolConcentration]:
    by_symbol: dict[str, list[VenueShare]] = defaultdict(list)
    for s in shares:
        by_symbol[s.symbol].append(s)
    out: list[SymbolConcentration] = []
    for symbol in sorted(by_symbol):
        venues = by_symbol[symbol]
        total = sum(v.volume for v in venues)
        value = hhi(v.share for v in venues if v.share is not None) if total else None
        out.append(SymbolConcentration(symbol, total, len(venues), value))
    return out


def tier_venue_shares(volumes: Iterable[VenueVolume]) -> list[TierVenueShare]:
    """Each MPID's share of the whole tier's volume, ranked 1…N by volume (ties by MPID)."""
    per_mpid: dict[str, int] = defaultdict(int)
    for v in volumes:
        per_mpid[v.mpid] += v.volume
    total = sum(per_mpid.values())
    ordered = sorted(per_mpid.items(), key=lambda item: (-item[1], item[0]))
    return [
        TierVenueShare(mpid, vol, vol / total if total else None, rank)
        for rank, (mpid, vol) in enumerate(ordered, start=1)
    ]
