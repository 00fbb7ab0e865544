"""Hostile sources (issue 9, finding 5, acceptance criterion 4): ``/dev/zero``, a FIFO, a 2 GB file
with a bad header, a 2 GB line, and HTTP servers that trickle bytes, each through a real
``spine run`` process. Every one ends with one line on stderr and its exit code, no traceback, no
hang, and a peak RSS (the process's own, from ``wait4``) that proves the input was streamed: a few
hundred MB at most for gigabytes of input.

On the main branch before issue 9 (06c5ce7): ``/dev/zero`` grew until the kernel killed the
process (23.8 GB), a FIFO blocked forever in ``read_bytes``, the 2 GB files were read whole (4.3 GB
of RSS to reject the header), and a trickling server ran past any timeout. Those runs are not
repeated here against main (they would take the machine down or never end): the failures follow
from main's ``finra.files.read_bytes`` (``path.read_bytes()``, ``httpx.get``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from market_spine.db.schema import raw, rejects
from market_spine.finra.files import HEADER_LINE, MAX_LINE_BYTES
from tests.support.trickle import trickling_server

INGEST = "finra.otc_transparency.ingest_week"
WEEK = ("--week", "2025-11-10", "--tier", "OTC")
GIB = 1024**3
# The bound that proves streaming: the interpreter and its libraries take ~90 MB; holding any of
# these inputs would take gigabytes.
RSS_BOUND_KB = 300 * 1024
# Not a speed limit: a guard so that a regression that hangs fails instead of blocking the suite.
HANG_GUARD_SECONDS = 600
ROW = "OTC|AABB|Asia Broadband Inc Common Stock|OTCN OTC LINK NQB IDQS|OTCN|6753871|171|2025-12-15"


@dataclass
class Run:
    code: int
    out: str
    err: str
    peak_rss_kb: int


def spine_process(database_url: str, *args: str, **env: str) -> Run:
    """Run ``spine`` as its own process; return its exit code, output and peak RSS (``ru_maxrss``
    of that process alone, from ``os.wait4``)."""
    command = [sys.executable, "-c", "from market_spine.cli.main import main; main()", *args]
    environment = {**os.environ, "SPINE_DATABASE_URL": database_url, "SPINE_BACKEND": "local", **env}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    output: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda name=name, stream=stream: output.__setitem__(name, stream.read()))
        for name, stream in (("out", process.stdout), ("err", process.stderr))
    ]
    for reader in readers:
        reader.start()
    guard = threading.Timer(HANG_GUARD_SECONDS, process.kill)
    guard.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        guard.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    for reader in readers:
        reader.join()
    return Run(process.returncode, output["out"].decode(), output["err"].decode(), usage.ru_maxrss)


def _one_line_error(run: Run, code: int) -> str:
    assert run.code == code, run.err
    assert "Traceback" not in run.err
    lines = [line for line in run.err.splitlines() if not line.startswith("spine: using the embedded")]
    assert len(lines) == 1, run.err
    assert lines[0].startswith("spine: error: ")
    return lines[0]


def _nothing_written(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(raw.c.capture_id).limit(1)).first() is None
    engine.dispose()


def test_dev_zero_is_refused_as_a_device(database_url: str) -> None:
    run = spine_process(database_url, "run", INGEST, *WEEK, "--file", "/dev/zero")
    error = _one_line_error(run, 4)
    assert error == (
        "spine: error: /dev/zero: is a character device, not a regular file: a FINRA weekly file must be a file on "
        "disk or an http(s) URL"
    )
    assert 0 < run.peak_rss_kb < RSS_BOUND_KB
    _nothing_written(database_url)


def test_a_fifo_is_refused_without_waiting_for_a_writer(database_url: str, tmp_path: Path) -> None:
    fifo = tmp_path / "week.csv"
    os.mkfifo(fifo)
    run = spine_process(database_url, "run", INGEST, *WEEK, "--file", str(fifo))
    error = _one_line_error(run, 4)
    assert error == (
        f"spine: error: {fifo}: is a FIFO (named pipe), not a regular file: a FINRA weekly file must be a file on "
        "disk or an http(s) URL"
    )
    assert 0 < run.peak_rss_kb < RSS_BOUND_KB


def test_a_2_gb_file_with_a_bad_header_is_refused_from_its_first_bytes(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv"
    with path.open("wb") as handle:
        handle.truncate(2 * GIB)  # sparse: 2 GB of NUL bytes and no line end
    run = spine_process(database_url, "run", INGEST, *WEEK, "--file", str(path))
    error = _one_line_error(run, 4)
    assert error.startswith(f"spine: error: {path}: bad header: expected '{HEADER_LINE}', got '\\x00\\x00")
    assert error.endswith(f"…' (no line end in the first {MAX_LINE_BYTES:,} bytes)")
    assert 0 < run.peak_rss_kb < RSS_BOUND_KB
    _nothing_written(database_url)


@pytest.mark.slow
def test_a_2_gb_line_is_streamed_past_and_rejected_by_normalize(database_url: str, tmp_path: Path) -> None:
    """A valid header and row, then a 2 GB line of NUL bytes: ingested in bounded memory (the line
    is hashed as it streams by and stored cut short), then rejected by normalize with a reason."""
    path = tmp_path / "long.csv"
    head = f"{HEADER_LINE}\n{ROW}\n".encode()
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(len(head) + 2 * GIB)
        handle.seek(0, os.SEEK_END)
        handle.write(f"\n{ROW.replace('AABB', 'AACC')}\n".encode())
    run = spine_process(database_url, "run", INGEST, *WEEK, "--file", str(path), "--chain")
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    assert run.out.splitlines() == [
        f"{INGEST}: RAW 3 rows (capture {_capture(run.out)})",
        f"finra.otc_transparency.normalize_week: NORMALIZED 2 rows, 1 rejected (capture {_capture(run.out)})",
        f"finra.otc_transparency.compute_week: CALC 2 rows (capture {_capture(run.out)})",
    ]
    assert 0 < run.peak_rss_kb < RSS_BOUND_KB
    engine = create_engine(database_url)
    with engine.connect() as conn:
        line, reason = conn.execute(select(rejects.c.line_number, rejects.c.reason)).one()
    engine.dispose()
    assert line == 3
    assert reason == f"line of {2 * GIB:,} bytes, longer than the {MAX_LINE_BYTES:,} a row may have: stored cut short"


def _capture(out: str) -> str:
    return out.split("(capture ", 1)[1].split(")", 1)[0]


# --- HTTP sources that never finish ---------------------------------------------------------------


BODY_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\n"


@pytest.mark.parametrize(
    ("header", "where"),
    [(BODY_HEADERS, "body"), (b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n", "headers")],
)
def test_a_download_that_trickles_stops_at_its_deadline(database_url: str, header: bytes, where: str) -> None:
    """One byte every 50 ms never trips the 5-second read timeout; the 3-second deadline stops it,
    in the headers as in the body."""
    with trickling_server(header, b"x", 0.05) as url:
        run = spine_process(
            database_url,
            "run",
            INGEST,
            *WEEK,
            "--file",
            url,
            SPINE_DOWNLOAD_DEADLINE_SECONDS="3",
            SPINE_DOWNLOAD_TIMEOUT_SECONDS="5",
        )
    error = _one_line_error(run, 5)
    assert error.startswith(f"spine: error: {url}: the download did not finish within its deadline of 3 s ")
    assert error.endswith("bytes received")
    assert "(SPINE_DOWNLOAD_DEADLINE_SECONDS)" in error
    if where == "headers":
        assert error.endswith("; 0 bytes received")
    assert 0 < run.peak_rss_kb < RSS_BOUND_KB
    _nothing_written(database_url)
