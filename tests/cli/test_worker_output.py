"""``spine worker``'s output (issue 10, "worker output"): one line per attempt, in words; a summary
at the end with the next attempt times; a failure named for what it is (a DNS failure is not "did
not answer three times"); no WARNING lines from the sources' own retries; singulars in the singular."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier
from market_spine.finra.sample import write_sample_week
from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"
T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)


def test_one_line_per_attempt_in_words_and_a_summary(
    spine: Spine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spine.now = T0
    monkeypatch.setenv("SPINE_FINRA_API_URL", "http://finra-api.invalid")  # a name no DNS resolves
    monkeypatch.setenv("SPINE_FINRA_API_BACKOFF_SECONDS", "0")
    file = write_sample_week(tmp_path / "otc.csv", date(2025, 11, 10), Tier.OTC, symbols=20, seed=5)
    rows = sum(1 for _ in file.open()) - 1
    assert spine("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", str(file)).code == 0
    api = ("--week", "2025-11-24", "--tier", "NMS_TIER_1", "--source", "finra-api", "--priority", "50")
    assert spine("work", "enqueue", INGEST, *api).code == 0

    result = spine("worker", "--until-idle")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 2, result.out
    capture = "finra.otc_transparency:OTC:2025-11-10:20251216"
    assert lines[0].startswith("ingest_week 2025-11-10 OTC: attempt 1/3 completed in ")
    assert lines[0].endswith(f"({rows:,} rows, capture {capture})")
    assert lines[1] == (
        "ingest_week 2025-11-24 NMS_TIER_1: attempt 1/3 failed: the host name of http://finra-api.invalid does not "
        f"resolve (DNS: {lines[1].split('(DNS: ')[1].split(')')[0]}); check the address and this machine's DNS; "
        "next attempt at 2025-12-16 10:35:00 UTC (in 300s)"
    )
    assert "did not answer" not in result.out
    assert "WARNING" not in result.err and "attempt 1 failed" not in result.err  # no per-request log flood
    assert result.err.splitlines()[-1] == (
        "worker idle: 2 attempts: 1 completed, 1 retrying (next attempt at 2025-12-16 10:35:00 UTC)"
    )

    idle = spine("worker", "--until-idle")
    assert (idle.out, idle.err.splitlines()[-1]) == ("", "worker idle: nothing to do")


def test_a_failure_no_retry_fixes_says_so_and_how_to_reopen_it(spine: Spine, tmp_path: Path) -> None:
    spine.now = T0
    bad = tmp_path / "bad.csv"
    bad.write_text("not|a|finra|header\n1|2|3|4\n")
    enqueue = ("work", "enqueue", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", str(bad))
    assert spine(*enqueue).code == 0
    result = spine("worker", "--until-idle")
    assert result.code == 0, result.err
    (line,) = result.out.splitlines()
    assert line.startswith("ingest_week 2025-11-10 OTC: attempt 1/3 failed: the input cannot be used: ")
    assert line.endswith(
        f"; FAILED (not retryable): `spine work retry {INGEST} --week 2025-11-10 --tier OTC` re-opens it"
    )
    assert result.err.splitlines()[-1] == "worker idle: 1 attempt: 1 failed"


def test_backfill_counts_in_the_singular(spine: Spine, tmp_path: Path) -> None:
    result = spine(
        "work",
        "backfill",
        INGEST,
        "--from",
        "2025-11-10",
        "--to",
        "2025-11-10",
        "--tier",
        "OTC",
        "--source",
        "finra-api",
    )
    assert result.code == 0, result.err
    assert result.out == "backfill: 1 enqueued, 0 already enqueued (1 partition)\n"
