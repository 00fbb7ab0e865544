"""Reading weekly files as a stream (issue 9): lines cut at any block boundary, strict UTF-8 line by
line, over-long lines, what is not a regular file, bounded counts, and FINRA API answers that are
too big or never end."""

from __future__ import annotations

import os
import random
import socket
from datetime import date
from hashlib import sha256
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier
from market_spine.errors import InputFileError, SourceUnavailable
from market_spine.finra.api import FinraApiClient
from market_spine.finra.files import (
    HEADER_LINE,
    MAX_LINE_BYTES,
    WeeklyFile,
    WeekStats,
    decode_lines,
    open_weekly,
    read_weekly,
    split_lines,
)
from market_spine.finra.sample import render_records, sample_records
from tests.support.trickle import trickling_server

WEEK = date(2025, 11, 10)


def _pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at random places, as a network or a file hands it over."""
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(data):
        size = rng.choice((1, 2, 7, 100, 4096))
        out.append(data[at : at + size])
        at += size
    return out


@pytest.mark.parametrize("seed", range(5))
def test_lines_come_out_the_same_wherever_the_blocks_are_cut(seed: int) -> None:
    data = b"a|b\r\n\nccc\nlast line without an end"
    lines = [line for batch, _ in split_lines(_pieces(data, seed)) for line in batch]
    assert lines == data.split(b"\n")


def test_an_over_long_line_is_cut_and_hashed_whole_without_being_held() -> None:
    long = b"x" * (3 * MAX_LINE_BYTES + 5)
    data = b"short\n" + long + b"\nafter\n"
    batches = list(split_lines(data[i : i + 1000] for i in range(0, len(data), 1000)))
    lines = [line for batch, _ in batches for line in batch]
    cut = [info for _, long_lines in batches for info in long_lines.values()]
    assert lines == [b"short", long[:MAX_LINE_BYTES], b"after"]
    assert cut == [(len(long), sha256(long).hexdigest())]


def test_decoding_is_strict_line_by_line() -> None:
    good = "Société Générale|ok".encode()
    bad = b"caf\xe9|latin-1"
    text, defects = decode_lines([good, bad, b"nul\x00here\r"], {})
    assert text == ["Société Générale|ok", "caf\\xe9|latin-1", "nul\\x00here"]
    assert defects is not None
    assert {index: defect.reason for index, defect in defects.items()} == {
        1: "not UTF-8: byte 0xe9 at byte 4 of the line",
        2: "NUL byte at byte 4 of the line",
    }
    assert defects[1].digest == sha256(bad).hexdigest()
    clean, none = decode_lines([good, b"plain\r"], {})
    assert (clean, none) == (["Société Générale|ok", "plain"], None)


def test_a_bom_crlf_and_blank_lines_keep_their_line_numbers() -> None:
    rows = render_records(sample_records(WEEK, Tier.OTC, symbols=3, seed=1)).splitlines()
    data = ("\ufeff" + "\r\n".join([rows[0], rows[1], "", rows[2], *rows[3:]]) + "\r\n").encode()
    week = WeeklyFile("mem", _pieces(data, 3))
    numbered = [(batch.first + i, line) for batch in week.batches() for i, line in enumerate(batch.lines) if line]
    assert numbered == [(2, rows[1]), *((n + 2, line) for n, line in enumerate(rows[2:], start=2))]
    assert week.stats.rows == len(rows) - 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\n \n", "empty file"),
        (b"\n" + HEADER_LINE.encode() + b"\n", "bad header: expected '.*', got ''"),
        (HEADER_LINE.encode()[:-3] + b"\xff\n", "bad header"),
        (HEADER_LINE.encode() + b"\n\n", "no data rows after the header"),
        (b"y" * (MAX_LINE_BYTES + 10), r"no line end in the first 65,536 bytes"),
    ],
)
def test_files_that_cannot_be_used_at_all(data: bytes, message: str) -> None:
    week = WeeklyFile("mem", _pieces(data, 2))
    with pytest.raises(InputFileError, match=message):
        list(week.batches())


def test_only_regular_files_are_opened(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"is a directory, not a FINRA weekly file"), open_weekly(tmp_path):
        pass
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match=r"is a FIFO \(named pipe\), not a regular file"), open_weekly(fifo):
        pass
    sock = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        with pytest.raises(InputFileError, match=r"is a socket, not a regular file"), open_weekly(sock):
            pass
    finally:
        server.close()
    with pytest.raises(InputFileError, match=r"no such file"), open_weekly(tmp_path / "absent.csv"):
        pass


def test_counts_stay_bounded_whatever_the_dates() -> None:
    stats = WeekStats("mem")
    lines = [f"OTC|S{i}|n|p|OTCN|1|1|{date.fromordinal(700_000 + i).isoformat()}" for i in range(5_000)]
    stats.add(lines)
    assert stats.rows == 5_000
    assert len(stats.dates) <= 1_000
    assert stats.publication_range() == (date.fromordinal(700_000), date.fromordinal(704_999))


def test_read_weekly_keeps_its_shape_for_small_inputs(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text(render_records(sample_records(WEEK, Tier.OTC, symbols=4, seed=1)), encoding="utf-8")
    data = read_weekly(path)
    assert data.line_numbers == list(range(2, len(data) + 2))
    assert data.stats.rows == len(data)


# --- FINRA's API: answers that are too big, or never end ---------------------------------------------


def test_an_api_page_far_larger_than_finras_is_refused() -> None:
    body = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b"[" * 99_999
    refused = r"with more than 10,000 bytes \(FINRA's pages are at most 3 MB\)"
    with (
        trickling_server(body[:80], body[80:], 0.0) as url,
        FinraApiClient(url.rsplit("/", 1)[0], max_page_bytes=10_000, backoff_seconds=0) as api,
        pytest.raises(SourceUnavailable, match=refused),
    ):
        api.weekly_summary(WEEK, Tier.OTC)


def test_an_api_that_trickles_stops_at_the_deadline() -> None:
    headers = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
    with (
        trickling_server(headers, b" ", 0.05) as url,
        FinraApiClient(url.rsplit("/", 1)[0], deadline=2, timeout=5, backoff_seconds=0) as api,
        pytest.raises(SourceUnavailable, match=r"did not finish within the deadline of 2 s"),
    ):
        api.weekly_summary(WEEK, Tier.OTC)
