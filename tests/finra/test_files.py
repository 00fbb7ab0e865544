"""Reading FINRA weekly files (paths and http URLs) and the sample generator's format."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from market_spine.core.partitions import Tier, weekly_file_name
from market_spine.errors import InputFileError, SourceUnavailable
from market_spine.finra.files import HEADER, HEADER_LINE, read_weekly, weekly_from_records
from market_spine.finra.sample import render_records, sample_records, write_sample_week
from market_spine.finra.schedule import finra_calendar

WEEK = date(2025, 11, 10)  # a trading week (Monday); FINRA first published its OTC data on 2025-12-15
PUBLISHED = date(2025, 12, 15)


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[str]:
    """A static file server over ``tmp_path`` on 127.0.0.1 (GET only, 404 for anything absent)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = tmp_path / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host!s}:{port}"
    server.shutdown()
    server.server_close()


def test_reads_a_path_with_line_numbers_and_fields(tmp_path: Path) -> None:
    path = write_sample_week(tmp_path / "w.csv", WEEK, Tier.OTC, symbols=5, seed=1)
    data = read_weekly(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert data.source == str(path.resolve())
    assert [r.line_number for r in data.rows()] == list(range(2, len(lines) + 1))
    assert [r.text for r in data.rows()] == lines[1:]
    assert all(len(r.fields) == len(HEADER) for r in data.rows())
    assert [r.fields for r in data.rows()] == [tuple(line.split("|")) for line in lines[1:]]


def test_reads_an_http_url(tmp_path: Path, http_files: str) -> None:
    path = write_sample_week(tmp_path / "w.csv", WEEK, Tier.OTC, symbols=5, seed=1)
    data = read_weekly(f"{http_files}/w.csv")
    assert data.source == f"{http_files}/w.csv"
    assert [r.text for r in data.rows()] == [r.text for r in read_weekly(path).rows()]
    with pytest.raises(SourceUnavailable, match="download failed with HTTP 404"):
        read_weekly(f"{http_files}/absent.csv")


def test_crlf_bom_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    records = sample_records(WEEK, Tier.OTC, symbols=3, seed=1)
    body = render_records(records).splitlines()
    text = "\ufeff" + "\r\n".join([body[0], body[1], "", body[2], *body[3:]]) + "\r\n\r\n"
    path = tmp_path / "dos.csv"
    path.write_text(text, encoding="utf-8")
    rows = read_weekly(path).rows()
    assert [r.text for r in rows] == body[1:]
    assert rows[1].line_number == 4  # the blank line 3 is skipped but still counted


def test_short_and_long_rows_keep_what_was_received(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(f"{HEADER_LINE}\nOTC|AAA|A Inc.\nOTC|BBB|B|P|MPID|1|2|2025-12-15|extra\n", encoding="utf-8")
    short, long = read_weekly(path).rows()
    assert short.fields == ("OTC", "AAA", "A Inc.", None, None, None, None, None)
    assert long.fields[-1] == "2025-12-15|extra"
    assert len(long.fields) == len(HEADER)


def _file(tmp_path: Path, records: list[dict[str, str]]) -> Path:
    path = tmp_path / "week.csv"
    path.write_text(render_records(records), encoding="utf-8")
    return path


def test_a_file_published_on_its_weeks_publication_day_is_accepted(tmp_path: Path) -> None:
    records = sample_records(WEEK, Tier.OTC, symbols=4, seed=1)
    assert {r["lastUpdateDate"] for r in records} == {"2025-12-15"}
    data = read_weekly(_file(tmp_path, records))
    assert data.stats.check(WEEK, Tier.OTC, finra_calendar()) == []
    assert data.stats.publication_range() == (PUBLISHED, PUBLISHED)
    assert data.stats.infer_week(Tier.OTC, finra_calendar()) == (WEEK, PUBLISHED)


def test_a_file_named_by_its_publication_day_is_refused_and_the_error_names_its_week(tmp_path: Path) -> None:
    data = read_weekly(_file(tmp_path, sample_records(WEEK, Tier.OTC, symbols=4, seed=1)))
    with pytest.raises(InputFileError) as error:
        data.stats.check(date(2025, 12, 15), Tier.OTC, finra_calendar())
    assert str(error.value) == (
        f"{data.source}: its rows were published on 2025-12-15 (lastUpdateDate), before FINRA's first publication "
        "of OTC week 2025-12-15 on 2026-01-20; 2025-12-15 fits week 2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14): "
        "use --week 2025-11-10"
    )


def test_corrections_and_odd_rows_do_not_refuse_a_file(tmp_path: Path) -> None:
    records = sample_records(WEEK, Tier.OTC, symbols=4, seed=1)
    records[0] = {**records[0], "lastUpdateDate": "2025-12-08"}  # published before the week: normalize rejects it
    records[1] = {**records[1], "lastUpdateDate": "2025-12-19"}  # a FINRA correction: fine
    data = read_weekly(_file(tmp_path, records))
    assert data.stats.check(WEEK, Tier.OTC, finra_calendar()) == []
    assert data.stats.publication_range() == (date(2025, 12, 8), date(2025, 12, 19))


def test_a_file_published_only_later_is_ingested_as_a_correction_with_a_note(tmp_path: Path) -> None:
    # Every row carries 2025-12-22, the day FINRA first published the next OTC week: probably that
    # week's file, but it could be a corrected download of this one; say so, do not refuse.
    records = [{**r, "lastUpdateDate": "2025-12-22"} for r in sample_records(WEEK, Tier.OTC, symbols=3, seed=1)]
    data = read_weekly(_file(tmp_path, records))
    (note,) = data.stats.check(WEEK, Tier.OTC, finra_calendar())
    assert "ingested as a correction of week 2025-11-10" in note
    assert note.endswith("if the file is week 2025-11-17, run again with --week 2025-11-17")
    assert data.stats.infer_week(Tier.OTC, finra_calendar()) == (date(2025, 11, 17), date(2025, 12, 22))


def test_infer_week_uses_the_earliest_date_and_needs_one(tmp_path: Path) -> None:
    records = sample_records(WEEK, Tier.NMS_TIER_1, symbols=3, seed=1)  # Tier 1: published 21 days on
    assert {r["lastUpdateDate"] for r in records} == {"2025-12-01"}
    records[0] = {**records[0], "lastUpdateDate": "2025-12-05"}
    data = read_weekly(_file(tmp_path, records))
    assert data.stats.infer_week(Tier.NMS_TIER_1, finra_calendar()) == (WEEK, date(2025, 12, 1))
    undated = read_weekly(_file(tmp_path, [{**r, "lastUpdateDate": "soon"} for r in records]))
    with pytest.raises(InputFileError, match="no row has a readable lastUpdateDate; name the week with --week"):
        undated.stats.infer_week(Tier.NMS_TIER_1, finra_calendar())
    with pytest.raises(InputFileError, match=r"no row has a readable lastUpdateDate \(FINRA's publication day\)"):
        undated.stats.check(WEEK, Tier.NMS_TIER_1, finra_calendar())


def test_api_rows_for_another_week_are_refused() -> None:
    records = [
        {**r, "weekStartDate": "2025-11-17", "summaryTypeCode": "ATS_W_SMBL_FIRM"}
        for r in sample_records(WEEK, Tier.OTC, symbols=2, seed=1)
    ]
    data = weekly_from_records("api", records)
    with pytest.raises(
        InputFileError, match=r"^api: the rows are for week 2025-11-17 \(weekStartDate\), not 2025-11-10$"
    ):
        data.stats.check(WEEK, Tier.OTC, finra_calendar())


def test_a_file_of_another_tier_is_refused(tmp_path: Path) -> None:
    data = read_weekly(_file(tmp_path, sample_records(date(2025, 11, 24), Tier.NMS_TIER_1, symbols=2, seed=1)))
    with pytest.raises(InputFileError, match="the file is for tier NMS_TIER_1, not the requested tier OTC"):
        data.stats.check(WEEK, Tier.OTC, finra_calendar())


def test_sample_is_deterministic_and_shaped_like_finra(tmp_path: Path) -> None:
    first = write_sample_week(tmp_path / "a.csv", WEEK, Tier.NMS_TIER_1, symbols=80, seed=4)
    second = write_sample_week(tmp_path / "b.csv", WEEK, Tier.NMS_TIER_1, symbols=80, seed=4)
    assert first.read_bytes() == second.read_bytes()
    other_seed = write_sample_week(tmp_path / "c.csv", WEEK, Tier.NMS_TIER_1, symbols=80, seed=5)
    assert other_seed.read_bytes() != first.read_bytes()

    lines = first.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER_LINE
    rows = [line.split("|") for line in lines[1:]]
    assert all(len(r) == len(HEADER) for r in rows)
    venues: dict[str, list[str]] = defaultdict(list)
    for tier_text, symbol, _issue, participant, mpid, shares, trades, updated in rows:
        assert tier_text == "NMS Tier 1"
        assert updated == "2025-12-01"  # Tier 1 weeks are first published 21 days after their Monday
        assert participant.startswith(f"{mpid} ")
        assert mpid.isupper() and 3 <= len(mpid) <= 4
        assert int(shares) >= int(trades) >= 1
        venues[symbol].append(mpid)
    assert len(venues) == 80
    assert {len(v) for v in venues.values()} == {1, 2, 3}
    assert all(len(set(v)) == len(v) for v in venues.values())
    assert any("," in r[2] for r in rows) and any("." in r[2] for r in rows)
    assert [(r[1], r[3]) for r in rows] == sorted((r[1], r[3]) for r in rows)


def test_sample_weeks_share_a_symbol_universe() -> None:
    week1 = sample_records(WEEK, Tier.OTC, symbols=30, seed=0)
    week2 = sample_records(date(2025, 11, 17), Tier.OTC, symbols=30, seed=0)
    assert {r["issueSymbolIdentifier"] for r in week1} == {r["issueSymbolIdentifier"] for r in week2}
    assert [r["totalWeeklyShareQuantity"] for r in week1] != [r["totalWeeklyShareQuantity"] for r in week2]
    assert {r["lastUpdateDate"] for r in week2} == {"2025-12-22"}


def test_sample_into_a_folder_uses_the_real_file_naming(tmp_path: Path) -> None:
    # FINRA's downloads carry their publication day, not the trading week.
    path = write_sample_week(tmp_path, WEEK, Tier.OTC, symbols=2)
    assert path == tmp_path / "finra_otc_weekly_otc_20251215.csv"
    assert weekly_file_name(PUBLISHED, Tier.NMS_TIER_2) == "finra_otc_weekly_nms_tier_2_20251215.csv"
