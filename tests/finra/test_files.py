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
from market_spine.finra.files import HEADER, HEADER_LINE, check_partition, read_weekly
from market_spine.finra.sample import render_records, sample_records, write_sample_week

WEEK = date(2025, 12, 15)


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


def test_partition_check_accepts_a_file_with_some_rows_of_the_week(tmp_path: Path) -> None:
    records = sample_records(WEEK, Tier.OTC, symbols=4, seed=1)
    records[0] = {**records[0], "lastUpdateDate": "2025-12-08"}
    path = tmp_path / "mixed.csv"
    path.write_text(render_records(records), encoding="utf-8")
    check_partition(read_weekly(path), WEEK, Tier.OTC)  # the odd row is normalize's to reject
    with pytest.raises(InputFileError, match="the file is for week 2025-12-15, not the requested week 2025-12-22"):
        check_partition(read_weekly(path), date(2025, 12, 22), Tier.OTC)


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
        assert updated == "2025-12-15"
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
    week2 = sample_records(date(2025, 12, 22), Tier.OTC, symbols=30, seed=0)
    assert {r["issueSymbolIdentifier"] for r in week1} == {r["issueSymbolIdentifier"] for r in week2}
    assert [r["totalWeeklyShareQuantity"] for r in week1] != [r["totalWeeklyShareQuantity"] for r in week2]
    assert {r["lastUpdateDate"] for r in week2} == {"2025-12-22"}


def test_sample_into_a_folder_uses_the_real_file_naming(tmp_path: Path) -> None:
    path = write_sample_week(tmp_path, WEEK, Tier.OTC, symbols=2)
    assert path == tmp_path / "finra_otc_weekly_otc_20251215.csv"
    assert weekly_file_name(WEEK, Tier.NMS_TIER_2) == "finra_otc_weekly_nms_tier_2_20251215.csv"
