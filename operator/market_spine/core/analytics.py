"""Venue analytics formulas: venue volume, venue share, HHI, tier venue share and rank.

Pure functions over plain rows: the definition of the formulas. ``pipelines.compute`` computes the
same in SQL, inside PostgreSQL, so that a week's rows never have to be held in a Python process;
``tests/pipelines/test_compute_formulas.py`` holds the two equal. Shares are floats: for a symbol,
the shares are each venue's volume divided by the symbol's total, so they sum to 1 within
floating-point error (well under 1e-9).

Zero totals: a symbol whose venues all report 0 shares has no defined market share. Its venue
shares and its HHI are ``None`` (NULL in SQL), never a division by zero and never a made-up 1/n.

Results are named tuples (immutable, compared by value, fields by name): a week has ~14k of them
and a tuple costs a fraction of a frozen dataclass to create. Each function is a pass or two over
its input plus a sort, with no per-group helper calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any, NamedTuple

_SYMBOL = itemgetter(0)
_KEY = itemgetter(0, 1)


class VenueVolume(NamedTuple):
    symbol: str
    mpid: str
    volume: int
    trade_count: int


class VenueShare(NamedTuple):
    symbol: str
    mpid: str
    volume: int
    share: float | None


class SymbolConcentration(NamedTuple):
    symbol: str
    total_volume: int
    venue_count: int
    hhi: float | None


class TierVenueShare(NamedTuple):
    mpid: str
    volume: int
    share: float | None
    rank: int


def venue_volumes(rows: Iterable[tuple[str, str, int, int]]) -> list[VenueVolume]:
    """Sum (symbol, mpid, shares, trades) rows per (symbol, mpid); sorted by symbol then mpid."""
    rows = list(rows)
    make = VenueVolume._make
    if len(set(map(_KEY, rows))) == len(rows):
        # The usual week: one row per (symbol, mpid), nothing to add up. Keys are unique, so
        # sorting whole rows orders them by key.
        return list(map(make, sorted(rows)))
    totals: dict[tuple[str, str], list[int]] = {}
    get = totals.get
    for symbol, mpid, shares, count in rows:
        key = (symbol, mpid)
        total = get(key)
        if total is None:
            totals[key] = [shares, count]
        else:
            total[0] += shares
            total[1] += count
    # Keys are unique, so sorting the items compares keys only.
    return [make((s, m, v, c)) for (s, m), (v, c) in sorted(totals.items())]


def venue_shares(volumes: Iterable[VenueVolume]) -> list[VenueShare]:
    """Each venue's share of its symbol's volume; sorted by symbol, a symbol's venues in input
    order (so the output lines up with :func:`venue_volumes`' output, row for row)."""
    ordered = sorted(volumes, key=_SYMBOL)  # stable: venues keep their order within a symbol
    totals: dict[str, int] = {}
    get = totals.get
    for symbol, _, volume, _ in ordered:
        totals[symbol] = get(symbol, 0) + volume
    make = VenueShare._make
    out: list[VenueShare] = []
    append = out.append
    for symbol, mpid, volume, _ in ordered:
        total = totals[symbol]
        append(make((symbol, mpid, volume, volume / total if total else None)))
    return out


def hhi(shares: Iterable[float]) -> float:
    """Herfindahl–Hirschman index on shares in [0, 1]: the sum of squared shares, in [0, 1]."""
    return sum(s * s for s in shares)


def symbol_concentration(shares: Iterable[VenueShare]) -> list[SymbolConcentration]:
    """Per symbol (sorted): total volume, venue count and :func:`hhi` of the venues' shares
    (``None`` when the total is 0). Squares are added in input order, as :func:`hhi` adds them."""
    # symbol -> [total volume, venue count, sum of squared shares]
    acc: dict[str, list[Any]] = {}
    get = acc.get
    for symbol, _, volume, share in shares:
        entry = get(symbol)
        if entry is None:
            acc[symbol] = [volume, 1, 0 if share is None else share * share]
        else:
            entry[0] += volume
            entry[1] += 1
            if share is not None:
                entry[2] += share * share
    make = SymbolConcentration._make
    return [
        make((symbol, total, count, squares if total else None))
        for symbol, (total, count, squares) in sorted(acc.items())
    ]


def tier_venue_shares(volumes: Iterable[VenueVolume]) -> list[TierVenueShare]:
    """Each MPID's share of the whole tier's volume, ranked 1…N by volume (ties by MPID)."""
    per_mpid: dict[str, int] = {}
    get = per_mpid.get
    for _, mpid, volume, _ in volumes:
        per_mpid[mpid] = get(mpid, 0) + volume
    total = sum(per_mpid.values())
    ordered = sorted(per_mpid.items(), key=lambda item: (-item[1], item[0]))
    return [
        TierVenueShare(mpid, vol, vol / total if total else None, rank)
        for rank, (mpid, vol) in enumerate(ordered, start=1)
    ]
