"""Sample FINRA weekly files in FINRA's exact format, for the demo and for tests.

Called by the demo when ``../shared/data/finra_otc/`` is absent, and by tests that need NMS Tier 1
/ Tier 2 data (only the OTC tier exists as real data) or a small week to break on purpose. Output
is deterministic for a given (seed, tier, week): the symbol universe depends on (seed, tier) only,
so consecutive weeks trade mostly the same symbols, and volumes vary by week. Like the real files:
pipe-delimited, one header row, 1–3 venues per symbol, ``marketParticipantName`` = "MPID NAME",
issue names with commas and periods, rows ordered by symbol then participant name, and
``lastUpdateDate`` = the day FINRA first publishes the trading week (``finra.schedule``), which is
also the date in the file's name.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

from market_spine.core.partitions import Tier, weekly_file_name
from market_spine.finra.files import HEADER, HEADER_LINE
from market_spine.finra.schedule import finra_calendar

TIER_DESCRIPTIONS: dict[Tier, str] = {
    Tier.NMS_TIER_1: "NMS Tier 1",
    Tier.NMS_TIER_2: "NMS Tier 2",
    Tier.OTC: "OTC",
}

# (MPID, participant name, weight): the weight skews volume towards the big venues, as in real weeks.
_VENUES: dict[Tier, tuple[tuple[str, str, int], ...]] = {
    Tier.OTC: (
        ("OTCN", "OTC LINK NQB IDQS", 60),
        ("OTCX", "OTC LINK ECN ATS", 25),
        ("ARCA", "GLOBAL OTC", 10),
        ("PPEX", "NORTH CAPITAL PRIVATE SECURITIES CORPORATION", 3),
        ("SWCL", "INX SECURITIES, LLC", 1),
        ("PROS", "TZERO SECURITIES LLC", 1),
    ),
    Tier.NMS_TIER_1: (
        ("UBSA", "UBS ATS", 20),
        ("INCR", "INTELLIGENT CROSS LLC", 18),
        ("JPMX", "JPM-X", 14),
        ("MSPL", "MS POOL (ATS-4)", 12),
        ("SGMT", "SIGMA X2", 10),
        ("IATS", "IBKR ATS", 9),
        ("CROS", "CROSSFINDER", 7),
        ("LQNT", "LIQUIDNET, INC. ATS", 5),
        ("EBXL", "LEVEL ATS", 5),
    ),
    Tier.NMS_TIER_2: (
        ("UBSA", "UBS ATS", 18),
        ("INCR", "INTELLIGENT CROSS LLC", 16),
        ("IATS", "IBKR ATS", 15),
        ("JPMX", "JPM-X", 12),
        ("DBAX", "SUPERX ATS", 9),
        ("MSPL", "MS POOL (ATS-4)", 8),
        ("BIDS", "BIDS TRADING, L.P.", 6),
    ),
}

_NAME_WORDS = (
    "Acme", "Northern", "Blue Ridge", "Pacific", "Summit", "Harbor", "Granite", "Silverline",
    "Atlas", "Meridian", "Cedar", "Orion", "Redwood", "Keystone", "Lakeshore", "Vanguard",
    "Evergreen", "Aurora", "Sterling", "Frontier",
)  # fmt: skip
_NAME_KINDS = (
    "Mining", "Biotech", "Energy", "Bancorp", "Technologies", "Resources", "Pharmaceuticals",
    "Capital", "Holdings", "Industries",
)  # fmt: skip
_NAME_SUFFIXES = (
    " Inc. Common Stock",
    ", Inc. Class A Common Stock",
    " Corp. Ordinary Shares",
    " Holdings, Ltd. Unsponsored ADR",
    " Co., Ltd. Common Shares",
    " Trust, Series 1 ETF",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _symbols(rng: random.Random, tier: Tier, count: int) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    while len(out) < count:
        length = rng.choice((4, 5, 5)) if tier is Tier.OTC else rng.choice((2, 3, 3, 4, 4))
        symbol = "".join(rng.choice(_LETTERS) for _ in range(length))
        if tier is Tier.OTC and rng.random() < 0.2:
            symbol = symbol[:4] + rng.choice("FY")  # foreign ordinaries and ADRs, as on OTC
        if symbol not in out:
            name = f"{rng.choice(_NAME_WORDS)} {rng.choice(_NAME_KINDS)}{rng.choice(_NAME_SUFFIXES)}"
            out[symbol] = name
    return sorted(out.items())


def sample_records(
    week: date, tier: Tier, *, symbols: int = 50, seed: int = 0, published_on: date | None = None
) -> list[dict[str, str]]:
    """One trading week (its Monday) of rows, as objects keyed by the file's column names, each
    stamped with ``lastUpdateDate`` = ``published_on`` (default: the week's first publication)."""
    if symbols < 1:
        raise ValueError("symbols must be at least 1")
    published = published_on or finra_calendar().first_publication(week, tier)
    universe = _symbols(random.Random(f"market-spine:{seed}:{tier.value}"), tier, symbols)
    rng = random.Random(f"market-spine:{seed}:{tier.value}:{week.isoformat()}")
    venues = _VENUES[tier]
    records: list[dict[str, str]] = []
    for symbol, issue_name in universe:
        count = rng.choices((1, 2, 3), weights=(45, 35, 20))[0]
        chosen: list[tuple[str, str, int]] = []
        pool = list(venues)
        for _ in range(count):
            pick = rng.choices(pool, weights=[w for _, _, w in pool])[0]
            pool.remove(pick)
            chosen.append(pick)
        base = int(10 ** rng.uniform(2, 7))  # 100 … 10M shares: weekly volumes span orders of magnitude
        rows = []
        for mpid, name, weight in chosen:
            shares = max(1, int(base * weight / 60 * rng.uniform(0.2, 1.5)))
            trades = max(1, min(shares, int(shares / rng.uniform(100, 5000)) + 1))
            rows.append((f"{mpid} {name}", mpid, shares, trades))
        for participant, mpid, shares, trades in sorted(rows):
            values = (
                TIER_DESCRIPTIONS[tier],
                symbol,
                issue_name,
                participant,
                mpid,
                str(shares),
                str(trades),
                published.isoformat(),
            )
            records.append(dict(zip(HEADER, values, strict=True)))
    return records


def render_records(records: list[dict[str, str]]) -> str:
    """Records → the text of a weekly file: the header, then one pipe-delimited line per record."""
    lines = [HEADER_LINE, *("|".join(record[name] for name in HEADER) for record in records)]
    return "\n".join(lines) + "\n"


def write_sample_week(path: str | Path, week: date, tier: Tier, *, symbols: int = 50, seed: int = 0) -> Path:
    """Write one sample trading week to ``path`` (a file, or a folder to write it in under FINRA's
    name for it, :func:`weekly_file_name` of its first publication day)."""
    target = Path(path)
    records = sample_records(week, tier, symbols=symbols, seed=seed)
    if target.is_dir():
        target = target / weekly_file_name(date.fromisoformat(records[0]["lastUpdateDate"]), tier)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_records(records), encoding="utf-8")
    return target
