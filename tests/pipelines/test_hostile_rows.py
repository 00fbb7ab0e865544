"""Hostile rows (issue 9, findings 4 and 6): numbers far past BIGINT, sums past BIGINT, NUL bytes,
bytes that are not UTF-8, exact duplicates and a capture date still to come. Each one is a reject
with a reason (or a one-line refusal), never a traceback, and never silent corruption.

Each test fails on the main branch before issue 9 (06c5ce7), as its docstring says why: that code
is read, not run, to say so (see the report of issue 9)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier
from market_spine.core.stages import INGEST, NORMALIZE
from market_spine.db.schema import captures, core_manifest, normalized, raw, rejects, symbol_hhi, tier_venue_share
from market_spine.db.schema import venue_volume as venue_table
from market_spine.errors import UsageError
from market_spine.finra.files import HEADER
from market_spine.finra.sample import render_records, sample_records
from tests.pipelines.helpers import NOW, count, reject_rows, run, run_chain

WEEK = date(2025, 11, 24)  # an NMS Tier 1 trading week, first published on 2025-12-15
TIER = Tier.NMS_TIER_1
BIGINT_MAX = 2**63 - 1


def _records() -> list[dict[str, str]]:
    return sample_records(WEEK, TIER, symbols=20, seed=9)


def _line(record: dict[str, str]) -> str:
    return "|".join(record[name] for name in HEADER)


def _write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "week.csv"
    path.write_bytes(data)
    return path


# --- finding 4: one bad row aborts the week -------------------------------------------------------


def test_a_quantity_of_five_thousand_digits_is_a_reject_not_a_traceback(engine: Engine, tmp_path: Path) -> None:
    """On main, normalize called int() on the 5,000 digits: ValueError (Python's 4,300-digit limit),
    a traceback, the attempt retried three times and FAILED."""
    records = _records()
    huge = "9" * 5_000
    records[3] = {**records[3], "totalWeeklyShareQuantity": huge}
    path = _write_bytes(tmp_path, render_records(records).encode())
    ingest, norm, calc = run_chain(engine, path, WEEK, TIER)

    assert (ingest.row_count, norm.row_count, norm.rejected) == (len(records), len(records) - 1, 1)
    [(line, reason, record)] = reject_rows(engine)
    assert line == 5  # the header is line 1, records[3] is line 5
    assert reason == f"totalWeeklyShareQuantity is out of range: '{'9' * 40}…' (5,000 characters)"
    assert record["totalWeeklyShareQuantity"] == huge  # the record keeps the row as received
    assert calc.row_count == len(records) - 1


def test_quantities_at_bigint_max_are_kept_and_their_sums_do_not_overflow(engine: Engine, tmp_path: Path) -> None:
    """On main, 9223372036854775807 passed normalize and compute's symbol total (two such venues)
    overflowed the BIGINT volume column: the stage failed with a psycopg error."""
    records = _records()
    symbol = records[0]["issueSymbolIdentifier"]
    venues = [r for r in records if r["issueSymbolIdentifier"] == symbol]
    if len(venues) < 2:  # make the first symbol trade at two venues
        venues.append({**records[1], "issueSymbolIdentifier": symbol, "MPID": "ZZZZ"})
        records.insert(1, venues[-1])
    for venue in venues[:2]:
        records[records.index(venue)] = {**venue, "totalWeeklyShareQuantity": str(BIGINT_MAX)}
    path = _write_bytes(tmp_path, render_records(records).encode())
    _, norm, calc = run_chain(engine, path, WEEK, TIER)

    assert norm.rejected == 0
    assert calc.row_count == len(records)
    with engine.connect() as conn:
        total, hhi = conn.execute(
            select(symbol_hhi.c.volume, symbol_hhi.c.hhi).where(symbol_hhi.c.symbol == symbol)
        ).one()
        shares = conn.execute(
            select(venue_table.c.volume, venue_table.c.share).where(venue_table.c.symbol == symbol)
        ).all()
        tier_total = sum(conn.execute(select(tier_venue_share.c.volume)).scalars())
    others = sum(int(r["totalWeeklyShareQuantity"]) for r in venues[2:])
    assert total == 2 * BIGINT_MAX + others  # past BIGINT, exact (NUMERIC), read back as an int
    assert isinstance(total, int)
    assert sum(share for _, share in shares) == pytest.approx(1.0, abs=1e-9)
    assert 0.0 < hhi <= 1.0
    assert tier_total == sum(int(r["totalWeeklyShareQuantity"]) for r in records)


def test_a_nul_byte_rejects_its_row_and_the_week_is_ingested(engine: Engine, tmp_path: Path) -> None:
    """On main, the NUL byte reached PostgreSQL's COPY, which cannot store it in text: ingest
    failed with a psycopg error and nothing of the week was loaded."""
    records = _records()
    lines = [_line(r).encode() for r in records]
    lines[2] = lines[2].replace(b"|", b"\x00|", 1)  # a NUL at the end of the tier description
    position = lines[2].index(b"\x00") + 1
    path = _write_bytes(tmp_path, b"\n".join(["|".join(HEADER).encode(), *lines]) + b"\n")
    ingest, norm, _ = run_chain(engine, path, WEEK, TIER)

    assert (ingest.row_count, norm.row_count, norm.rejected) == (len(records), len(records) - 1, 1)
    [(line, reason, record)] = reject_rows(engine)
    assert (line, reason) == (4, f"NUL byte at byte {position} of the line")
    assert record["tierDescription"] == records[2]["tierDescription"] + "\\x00"  # the damage, made visible
    with engine.connect() as conn:
        defect = conn.execute(select(raw.c.defect).where(raw.c.line_number == 4)).scalar_one()
    assert defect == reason


# --- finding 6: silent corruption ------------------------------------------------------------------


def test_one_byte_that_is_not_utf8_rejects_its_line_only(engine: Engine, tmp_path: Path) -> None:
    """On main, one invalid byte made the whole file decode as latin-1: every non-ASCII name
    became mojibake ('SociÃ©tÃ©') and the bad line was kept as if it were fine."""
    records = _records()
    records[1] = {**records[1], "issueName": "Société Générale S.A. Unsponsored ADR"}
    lines = [_line(r).encode() for r in records]
    lines[5] = lines[5].replace(b"|", b"|\xff", 2)  # a byte no UTF-8 text has, after the 2nd pipe's
    bad_at = lines[5].index(b"\xff") + 1
    path = _write_bytes(tmp_path, b"\n".join(["|".join(HEADER).encode(), *lines]) + b"\n")
    _, norm, _ = run_chain(engine, path, WEEK, TIER)

    assert norm.rejected == 1
    [(line, reason, _record)] = reject_rows(engine)
    assert (line, reason) == (7, f"not UTF-8: byte 0xff at byte {bad_at} of the line")
    with engine.connect() as conn:
        names = set(conn.execute(select(normalized.c.issue_name)).scalars())
        stored = conn.execute(select(raw.c.issue_name).where(raw.c.line_number == 3)).scalar_one()
    assert stored == "Société Générale S.A. Unsponsored ADR"
    assert "Société Générale S.A. Unsponsored ADR" in names
    assert not any("Ã" in (name or "") for name in names)


def test_exact_duplicates_are_rejected_with_the_line_they_repeat(engine: Engine, tmp_path: Path) -> None:
    """On main, an exact duplicate row was summed into its venue: the volume doubled, no reject."""
    records = _records()
    first = records[4]
    # The same venue row twice more (once with padding and a lower-case MPID: the same values once
    # normalized), and a row for the same venue with other numbers, which is not a duplicate.
    copies = [dict(first), {**first, "MPID": f" {first['MPID'].lower()} "}]
    other = {**first, "totalWeeklyShareQuantity": "17", "totalWeeklyTradeCount": "1"}
    path = _write_bytes(tmp_path, render_records([*records, *copies, other]).encode())
    _, norm, _ = run_chain(engine, path, WEEK, TIER)

    last = len(records) + 1  # the line of the last original record
    assert norm.rejected == 2
    assert [(line, reason) for line, reason, _ in reject_rows(engine)] == [
        (last + 1, "duplicate of line 6"),
        (last + 2, "duplicate of line 6"),
    ]
    assert count(engine, normalized) == len(records) + 1
    with engine.connect() as conn:
        volume = conn.execute(
            select(venue_table.c.volume).where(
                venue_table.c.symbol == first["issueSymbolIdentifier"], venue_table.c.mpid == first["MPID"]
            )
        ).scalar_one()
    assert volume == int(first["totalWeeklyShareQuantity"]) + 17  # once, plus the other row's 17


def test_a_capture_date_in_the_future_is_refused_and_nothing_is_written(engine: Engine, tmp_path: Path) -> None:
    """On main, a future --capture-date was accepted: that capture became the partition's latest
    and hid every real capture taken before that day."""
    path = _write_bytes(tmp_path, render_records(_records()).encode())
    tomorrow = NOW.date() + timedelta(days=1)
    with pytest.raises(UsageError) as refused:
        run(engine, INGEST, WEEK, TIER, params={"file": str(path)}, capture_date=tomorrow)
    assert str(refused.value) == (
        "--capture-date 2025-12-17 is in the future (today is 2025-12-16, UTC): a capture is dated the day it "
        "was taken, or an earlier day it re-creates"
    )
    with pytest.raises(UsageError, match="--capture-date 2025-12-17 is in the future"):
        run(engine, INGEST, WEEK, TIER, params={"file": str(path), "capture_date": tomorrow.isoformat()})
    assert count(engine, raw) == count(engine, captures) == count(engine, core_manifest) == 0
    # Today and earlier days are captures as before.
    today = run(engine, INGEST, WEEK, TIER, params={"file": str(path)}, capture_date=NOW.date())
    assert today.row_count == len(_records())
    earlier = run(engine, INGEST, WEEK, TIER, params={"file": str(path), "capture_date": "2025-12-15"})
    assert earlier.capture_id.endswith(":20251215")


def test_normalize_of_a_damaged_api_record_rejects_it(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Text from JSON can hold what PostgreSQL text cannot (a NUL, a lone surrogate): ingest stores
    the record with the damage visible, and normalize rejects it with a reason, like a file's line."""
    from contextlib import contextmanager

    from market_spine.finra.files import ApiWeek
    from market_spine.pipelines import ingest

    records = [{**r, "weekStartDate": WEEK.isoformat(), "summaryTypeCode": "ATS_W_SMBL_FIRM"} for r in _records()[:3]]
    records[1] = {**records[1], "issueName": "Bad\ud800Name"}

    @contextmanager
    def finra_answers(*_: object) -> Iterator[ApiWeek]:  # what the API client yields for the week
        yield ApiWeek("api", records)

    monkeypatch.setattr(ingest, "open_source", finra_answers)
    assert run(engine, INGEST, WEEK, TIER, params={"source": "finra-api"}).row_count == 3
    with engine.connect() as conn:
        stored = conn.execute(select(raw.c.defect, raw.c.issue_name).where(raw.c.line_number == 2)).one()
    at = "|".join(records[1][name] for name in HEADER).index("\ud800") + 1
    reason = f"not valid Unicode: '\\ud800' at character {at} of the record"
    assert (stored.defect, stored.issue_name) == (reason, "Bad\\ud800Name")

    normalize = run(engine, NORMALIZE, WEEK, TIER)
    assert (normalize.row_count, normalize.rejected) == (2, 1)
    [(line, rejected_for, record)] = reject_rows(engine)
    assert (line, rejected_for, record["issueName"]) == (2, reason, "Bad\\ud800Name")


def test_normalize_is_one_transaction_and_replays_cleanly(engine: Engine, tmp_path: Path) -> None:
    """Rejects and normalized rows of a replayed normalize replace the earlier ones exactly."""
    records = _records()
    records[0] = {**records[0], "MPID": ""}
    path = _write_bytes(tmp_path, render_records([*records, records[5]]).encode())
    run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    first = run(engine, NORMALIZE, WEEK, TIER)
    again = run(engine, NORMALIZE, WEEK, TIER)
    assert (first.row_count, first.rejected) == (again.row_count, again.rejected) == (len(records) - 1, 2)
    assert count(engine, normalized) == len(records) - 1
    assert count(engine, rejects) == 2
