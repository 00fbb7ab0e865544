"""Bad input (issue 2, acceptance criterion 4): a clear one-line error, nothing partial written;
row-level damage goes to rejects with a reason while the rest of the week is normalized."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.core.stages import INGEST, NORMALIZE
from market_spine.db.schema import core_manifest, normalized, raw, rejects
from market_spine.errors import InputFileError, UsageError
from market_spine.finra.files import HEADER_LINE
from market_spine.finra.sample import render_records, sample_records
from market_spine.pipelines.registry import RunContext, get_pipeline
from tests.pipelines.helpers import NOW, count, manifest, reject_rows, run, run_chain

WEEK = date(2025, 11, 24)  # an NMS Tier 1 trading week, first published on 2025-12-15
TIER = Tier.NMS_TIER_1


def _records() -> list[dict[str, str]]:
    return sample_records(WEEK, TIER, symbols=30, seed=5)


def _write(tmp_path: Path, text: str, name: str = "week.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _nothing_written(engine: Engine) -> None:
    assert count(engine, raw) == 0
    assert count(engine, core_manifest) == 0


# --- files that cannot be used at all ---------------------------------------------------------------


def test_bad_header_fails_with_one_line_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    text = render_records(_records()).replace("issueSymbolIdentifier", "symbol", 1)
    path = _write(tmp_path, text)
    with pytest.raises(InputFileError) as failure:
        run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: bad header: expected '{HEADER_LINE}', got 'tierDescription|symbol|")
    _nothing_written(engine)


def test_comma_delimited_file_is_a_bad_header(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, render_records(_records()).replace("|", ","))
    with pytest.raises(InputFileError, match="bad header: expected 'tierDescription\\|issueSymbolIdentifier"):
        run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    _nothing_written(engine)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (HEADER_LINE + "\n", "no data rows after the header"),
    ],
)
def test_empty_files_are_refused(engine: Engine, tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputFileError, match=message):
        run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    _nothing_written(engine)


def test_missing_file_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        run(engine, INGEST, WEEK, TIER, params={"file": str(tmp_path / "absent.csv")})
    _nothing_written(engine)


def test_file_for_an_earlier_week_names_the_week_it_fits_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    earlier = date(2025, 11, 17)  # published 2025-12-08, before WEEK could have been
    path = _write(tmp_path, render_records(sample_records(earlier, TIER, symbols=30, seed=5)))
    with pytest.raises(InputFileError) as failure:
        run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    assert str(failure.value) == (
        f"{path}: its rows were published on 2025-12-08 (lastUpdateDate), before FINRA's first publication of "
        "NMS_TIER_1 week 2025-11-24 on 2025-12-15; 2025-12-08 fits week 2025-11-17 (Mon 2025-11-17 – Fri 2025-11-21): "
        "use --week 2025-11-17"
    )
    _nothing_written(engine)


def test_file_published_only_after_the_week_is_ingested_with_a_note(engine: Engine, tmp_path: Path) -> None:
    later = date(2025, 12, 1)  # published 2025-12-22: a correction of WEEK, or the wrong file
    path = _write(tmp_path, render_records(sample_records(later, TIER, symbols=5, seed=5)))
    result = run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    (note,) = result.notes
    assert note.endswith("if the file is week 2025-12-01, run again with --week 2025-12-01")
    assert result.row_count > 0


def test_file_for_another_tier_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, render_records(sample_records(WEEK, Tier.OTC, symbols=30, seed=5)))
    with pytest.raises(InputFileError, match="the file is for tier OTC, not the requested tier NMS_TIER_1"):
        run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    _nothing_written(engine)


def test_a_failed_replay_leaves_the_previous_capture_intact(engine: Engine, tmp_path: Path) -> None:
    good = _write(tmp_path, render_records(_records()), "good.csv")
    first = run(engine, INGEST, WEEK, TIER, params={"file": str(good)})
    before = manifest(engine)

    def crash(rows: int) -> None:
        raise RuntimeError(f"worker killed after {rows} rows")

    ctx = RunContext(
        engine=engine,
        pipeline=INGEST,
        week=WEEK,
        tier=TIER,
        execution_id=uuid.uuid4().hex,
        now=NOW,
        params={"file": str(good)},
        progress=crash,
    )
    with pytest.raises(RuntimeError, match="worker killed"):
        get_pipeline(INGEST).run(ctx)
    # The replay's delete and COPY rolled back with it: the first run's rows are all there.
    assert count(engine, raw, capture_id=first.capture_id) == first.row_count
    assert manifest(engine) == before


# --- row-level damage: rejects with reasons ---------------------------------------------------------


def test_non_numeric_share_quantity_is_rejected_and_the_rest_normalized(engine: Engine, tmp_path: Path) -> None:
    records = _records()
    records[4] = {**records[4], "totalWeeklyShareQuantity": "abc"}
    path = _write(tmp_path, render_records(records))
    ingest, norm, calc = run_chain(engine, path, WEEK, TIER)

    assert ingest.row_count == len(records)
    assert (norm.row_count, norm.rejected) == (len(records) - 1, 1)
    assert count(engine, normalized) + count(engine, rejects) == count(engine, raw) == len(records)
    [(line, reason, record)] = reject_rows(engine)
    assert line == 6  # header is line 1, records[4] is line 6
    assert reason == "totalWeeklyShareQuantity is not a non-negative integer: 'abc'"
    assert record["totalWeeklyShareQuantity"] == "abc"
    assert record["issueSymbolIdentifier"] == records[4]["issueSymbolIdentifier"]
    assert calc.row_count == len(records) - 1


def test_blank_symbol_is_rejected(engine: Engine, tmp_path: Path) -> None:
    records = _records()
    records[0] = {**records[0], "issueSymbolIdentifier": "  "}
    path = _write(tmp_path, render_records(records))
    _, norm, _ = run_chain(engine, path, WEEK, TIER)
    assert norm.rejected == 1
    [(line, reason, record)] = reject_rows(engine)
    assert (line, reason, record["issueSymbolIdentifier"]) == (2, "blank symbol", "  ")
    with engine.connect() as conn:
        symbols = set(conn.execute(select(normalized.c.symbol)).scalars())
    assert "" not in symbols
    assert len(symbols) >= 29


def test_every_kind_of_bad_row_has_its_reason(engine: Engine, tmp_path: Path) -> None:
    records = _records()
    earlier = date(2025, 12, 8).isoformat()  # FINRA's publication of the week before
    edits = {
        0: {"MPID": ""},
        1: {"totalWeeklyTradeCount": "-3"},
        2: {"totalWeeklyShareQuantity": "1,234"},
        3: {"lastUpdateDate": earlier},
        4: {"lastUpdateDate": "Dec 15"},
        5: {"tierDescription": "NMS Tier 2"},
        6: {"tierDescription": "Tier 9"},
        7: {"totalWeeklyShareQuantity": "99999999999999999999"},
    }
    for index, change in edits.items():
        records[index] = {**records[index], **change}
    # Not rejections: padding, a lower-case symbol suffix (kept: in FINRA's symbology it can be
    # another security), a lower-case MPID, FINRA's tier code, and a row FINRA corrected later.
    records[8] = {
        **records[8],
        "issueSymbolIdentifier": f" {records[8]['issueSymbolIdentifier']}p ",
        "MPID": records[8]["MPID"].lower(),
        "tierDescription": "T1",
    }
    records[9] = {**records[9], "lastUpdateDate": "2025-12-19"}
    text = render_records(records)
    lines = text.splitlines()
    lines.append("NMS Tier 1|SHORT|Short Row Inc.")  # a truncated line
    path = _write(tmp_path, "\n".join(lines) + "\n")

    ingest = run(engine, INGEST, WEEK, TIER, params={"file": str(path)})
    norm = run(engine, NORMALIZE, WEEK, TIER)
    assert ingest.row_count == len(records) + 1
    assert norm.rejected == len(edits) + 1
    assert norm.row_count + norm.rejected == ingest.row_count
    reasons = {line: reason for line, reason, _ in reject_rows(engine)}
    assert reasons == {
        2: "blank MPID",
        3: "totalWeeklyTradeCount is not a non-negative integer: '-3'",
        4: "totalWeeklyShareQuantity is not a non-negative integer: '1,234'",
        5: "published on 2025-12-08 (lastUpdateDate), before week 2025-11-24's first publication (2025-12-15): "
        "the row is for week 2025-11-17",
        6: "lastUpdateDate is not a date: 'Dec 15'",
        7: "row is for tier NMS_TIER_2, not NMS_TIER_1",
        8: "unknown tier 'Tier 9'",
        9: "totalWeeklyShareQuantity is out of range: '99999999999999999999'",
        len(records) + 2: "malformed row: 3 of 8 pipe-delimited fields; missing marketParticipantName, MPID, "
        "totalWeeklyShareQuantity, totalWeeklyTradeCount, lastUpdateDate",
    }
    with engine.connect() as conn:
        cleaned = conn.execute(
            select(normalized.c.symbol, normalized.c.mpid).where(normalized.c.line_number == 10)
        ).one()
    assert cleaned.symbol == records[8]["issueSymbolIdentifier"].strip()
    assert cleaned.symbol.endswith("p")
    assert cleaned.mpid == records[8]["MPID"].upper()
    # A rejected row's record is the row as received, keyed by FINRA's column names.
    short = next(record for line, _, record in reject_rows(engine) if line == len(records) + 2)
    assert short["issueSymbolIdentifier"] == "SHORT"
    assert short["MPID"] is None
    assert json.loads(json.dumps(short)) == short


# --- usage errors -----------------------------------------------------------------------------------


def test_unknown_pipeline_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as failure:
        get_pipeline("finra.otc_transparency.ingest_month")
    message = str(failure.value)
    assert message.startswith("unknown pipeline 'finra.otc_transparency.ingest_month'; known pipelines: ")
    assert INGEST in message


def test_unknown_tier_is_refused_with_the_choices() -> None:
    with pytest.raises(UnknownTier) as failure:
        parse_tier("NMS_TIER_3")
    assert isinstance(failure.value, ValueError)
    assert (
        str(failure.value) == "unknown tier 'NMS_TIER_3'; expected one of NMS_TIER_1 (T1), NMS_TIER_2 (T2), OTC (OTCE)"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "ingest needs a source: --file PATH|URL or --source finra-api"),
        ({"source": "ftp"}, "unknown source 'ftp'"),
        ({"source": "finra-api", "file": "x.csv"}, "give either --file or --source finra-api, not both"),
    ],
)
def test_ingest_without_a_single_source_is_a_usage_error(engine: Engine, params: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run(engine, INGEST, WEEK, TIER, params=params)
    _nothing_written(engine)


def test_backslashes_and_tabs_are_stored_exactly_as_received(engine: Engine, tmp_path: Path) -> None:
    # COPY's text format gives backslash and tab a meaning; values containing them must survive.
    records = _records()
    odd_name = "Back\\slash\tTab, Inc. \\N"
    records[1] = {**records[1], "issueName": odd_name}
    path = _write(tmp_path, render_records(records))
    ingest, norm, _ = run_chain(engine, path, WEEK, TIER)
    assert (ingest.row_count, norm.rejected) == (len(records), 0)
    with engine.connect() as conn:
        stored = conn.execute(select(raw.c.issue_name).where(raw.c.line_number == 3)).scalar_one()
        cleaned = conn.execute(select(normalized.c.issue_name).where(normalized.c.line_number == 3)).scalar_one()
    assert stored == odd_name
    assert cleaned == odd_name


def test_progress_is_reported_while_ingesting(engine: Engine, tmp_path: Path) -> None:
    records = sample_records(WEEK, TIER, symbols=2500, seed=5)
    path = _write(tmp_path, render_records(records))
    seen: list[int] = []
    ctx = RunContext(
        engine=engine,
        pipeline=INGEST,
        week=WEEK,
        tier=TIER,
        execution_id=uuid.uuid4().hex,
        now=NOW,
        params={"file": str(path)},
        progress=seen.append,
    )
    result = get_pipeline(INGEST).run(ctx)
    assert len(seen) >= 2
    assert seen == sorted(seen)
    assert seen[-1] == result.row_count == len(records)
