"""Issue 8 on the real files: they ingest as the OTC trading weeks FINRA published them for, naming
the publication day as the week is refused with the right suggestion, and the venue analytics are
the same numbers as before the change, only labelled with the right week.

The pinned values were captured from the product before issue 8 (commit 2e72eb8, which filed the
20251215 file under "week 2025-12-15"), on the same files: the SHA-256 of every venue share and
HHI row (``repr`` of each value, rows sorted), and the full tier venue share table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier
from market_spine.db.schema import symbol_hhi, tier_venue_share, venue_volume
from tests.pipelines.helpers import run_chain
from tests.support.cli import Spine

pytestmark = pytest.mark.realdata

INGEST = "finra.otc_transparency.ingest_week"
OTC_20251215 = "finra_otc_weekly_otc_20251215.csv"
OTC_20251222 = "finra_otc_weekly_otc_20251222.csv"

# file → (trading week, (venue rows, digest), (HHI rows, digest), tier venue share rows).
BEFORE: dict[str, tuple[date, tuple[int, str], tuple[int, str], list[tuple[int, str, int, float]]]] = {
    OTC_20251215: (
        date(2025, 11, 10),
        (5328, "cd76f03ce177c3499ba7be666609e46c946801a8c98a144de3318f4ce4c0f20c"),
        (3111, "402bfbe9c645d86f55eb1de06cc19d9020c21f6a065f5c22210ebf7c210be329"),
        [
            (1, "OTCN", 1098033568, 0.8218839348070724),
            (2, "OTCX", 192693090, 0.14423179730998292),
            (3, "ARCA", 41003592, 0.030691405541969547),
            (4, "SWCL", 4124679, 0.003087344053161133),
            (5, "PPEX", 115190, 8.622032441400432e-05),
            (6, "PROS", 15430, 1.1549436632590387e-05),
            (7, "ALTS", 5316, 3.979054124358425e-06),
            (8, "SMKT", 5026, 3.7619875901101285e-06),
            (9, "STEN", 10, 7.485052905113666e-09),
        ],
    ),
    OTC_20251222: (
        date(2025, 11, 17),
        (5192, "1a5611e132b7b21209c77820a2de6db83393f56a1d051212cc1a04b143139acc"),
        (2985, "bbd692bad58ea0fc21c3150433018e229473e1584360d2266f79b89b562a4564"),
        [
            (1, "OTCN", 763597534, 0.8090646253189647),
            (2, "OTCX", 133827461, 0.14179598514962383),
            (3, "ARCA", 43843069, 0.0464536285332196),
            (4, "SWCL", 2246949, 0.0023807396826871136),
            (5, "VIAT", 224560, 0.00023793103588208646),
            (6, "PPEX", 29607, 3.136989748557594e-05),
            (7, "PROS", 18035, 1.9108862807861724e-05),
            (8, "ALTS", 11265, 1.1935754894957712e-05),
            (9, "SMKT", 4413, 4.6757644342164564e-06),
        ],
    ),
}


def _real(finra_files: list[Path], name: str) -> Path:
    by_name = {path.name: path for path in finra_files}
    if name not in by_name:
        pytest.skip(f"{name} is not in the real data folder")
    return by_name[name]


def _digest(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    lines = sorted("|".join(repr(value) for value in row) for row in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_venue_share_hhi_and_rank_are_unchanged_in_value_and_filed_under_the_trading_week(
    engine: Engine, finra_files: list[Path], name: str
) -> None:
    week, venues_before, hhi_before, ranks_before = BEFORE[name]
    ingest, _, _ = run_chain(engine, _real(finra_files, name), week, Tier.OTC)
    capture = ingest.capture_id
    assert capture.startswith(f"finra.otc_transparency:OTC:{week.isoformat()}:")
    with engine.connect() as conn:
        v, h, t = venue_volume.c, symbol_hhi.c, tier_venue_share.c
        venues = conn.execute(
            select(v.symbol, v.mpid, v.volume, v.trade_count, v.share, v.week).where(v.capture_id == capture)
        ).all()
        hhis = conn.execute(
            select(h.symbol, h.volume, h.venue_count, h.hhi, h.week).where(h.capture_id == capture)
        ).all()
        ranks = conn.execute(
            select(t.rank, t.mpid, t.volume, t.share, t.week).where(t.capture_id == capture).order_by(t.rank)
        ).all()
    assert {row[-1] for row in (*venues, *hhis, *ranks)} == {week}  # labelled with the trading week
    assert _digest(row[:-1] for row in venues) == venues_before
    assert _digest(row[:-1] for row in hhis) == hhi_before
    assert [tuple(row[:-1]) for row in ranks] == ranks_before


def test_the_shared_files_through_the_cli_as_the_issue_tabulates(spine: Spine, finra_files: list[Path]) -> None:
    """``--week 2025-11-10`` ingests …20251215.csv; ``--week 2025-12-15`` is refused, pointing to 2025-11-10."""
    path = str(_real(finra_files, OTC_20251215))
    spine.now = datetime(2025, 12, 16, 9, 0, tzinfo=UTC)

    refused = spine("run", INGEST, "--week", "2025-12-15", "--tier", "OTC", "--file", path)
    assert refused.code == 4
    assert refused.err.count("\n") == 1 and "Traceback" not in refused.err
    assert refused.err.startswith(f"spine: error: {path}: its rows were published on 2025-12-15 (lastUpdateDate)")
    assert refused.err.rstrip().endswith(
        "2025-12-15 fits week 2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14): use --week 2025-11-10"
    )

    ok = spine("run", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", path, "--chain")
    assert ok.code == 0, ok.err
    assert "(capture finra.otc_transparency:OTC:2025-11-10:20251216)" in ok.out

    # The seed's --week-ending names the same partition by its Friday: a replay of the same capture.
    friday = spine("run", INGEST, "--week-ending", "2025-11-14", "--tier", "OTC", "--file", path)
    assert friday.code == 0, friday.err
    assert "--week-ending 2025-11-14: trading week 2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14)" in friday.err
    assert "(capture finra.otc_transparency:OTC:2025-11-10:20251216)" in friday.out

    captures = spine("query", "captures", "--week", "2025-11-12", "--tier", "OTCE", "--format", "json").json()
    assert [(c["capture_id"], c["week"], c["published_from"], c["published_to"], c["raw_rows"]) for c in captures] == [
        ("finra.otc_transparency:OTC:2025-11-10:20251216", "2025-11-10", "2025-12-15", "2025-12-15", 5328)
    ]


def test_a_file_without_a_week_is_filed_under_the_week_finra_published_on_its_date(
    spine: Spine, finra_files: list[Path]
) -> None:
    path = str(_real(finra_files, OTC_20251222))
    spine.now = datetime(2025, 12, 23, 9, 0, tzinfo=UTC)
    result = spine("run", INGEST, "--tier", "OTC", "--file", path)
    assert result.code == 0, result.err
    assert (
        f"no --week given: {path} carries lastUpdateDate 2025-12-22; the newest OTC week FINRA had published by "
        "then is 2025-11-17 (Mon 2025-11-17 – Fri 2025-11-21), first published on 2025-12-22; using --week 2025-11-17"
    ) in result.err
    assert "(capture finra.otc_transparency:OTC:2025-11-17:20251223)" in result.out
