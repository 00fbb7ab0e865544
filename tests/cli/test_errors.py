"""Bad input through the real CLI: one clear line on stderr, a specific exit code, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier
from market_spine.finra.sample import write_sample_week
from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"


def _one_line_error(text: str, *fragments: str) -> None:
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("spine: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_pipeline(spine: Spine) -> None:
    result = spine(
        "run",
        "finra.otc_transparency.ingest_wek",
        "--week-ending",
        "2025-12-15",
        "--tier",
        "OTC",
        "--source",
        "finra-api",
    )
    assert result.code == 2
    _one_line_error(result.err, "unknown pipeline 'finra.otc_transparency.ingest_wek'", INGEST)


def test_unknown_tier(spine: Spine) -> None:
    result = spine("work", "enqueue", INGEST, "--week-ending", "2025-12-15", "--tier", "TIER_9")
    assert result.code == 2
    _one_line_error(result.err, "unknown tier 'TIER_9'", "NMS_TIER_1 (T1), NMS_TIER_2 (T2), OTC (OTCE)")


def test_bad_date(spine: Spine) -> None:
    result = spine("work", "enqueue", INGEST, "--week-ending", "2025-13-01", "--tier", "OTC")
    assert result.code == 2
    _one_line_error(result.err, "--week-ending must be a date as YYYY-MM-DD")


def test_week_and_week_ending_are_one_option(spine: Spine) -> None:
    both = spine("work", "enqueue", INGEST, "--week", "2025-11-10", "--week-ending", "2025-11-14", "--tier", "OTC")
    assert both.code == 2
    _one_line_error(both.err, "give --week or --week-ending, not both")
    neither = spine("work", "retry", INGEST, "--tier", "OTC")
    assert neither.code == 2
    _one_line_error(neither.err, "name the trading week with --week DATE")
    # A file that is not readable here (a path in the Job's pod) cannot tell its week.
    elsewhere = spine("work", "enqueue", INGEST, "--tier", "OTC", "--file", "/in/the/pod/week.csv")
    assert elsewhere.code == 2
    _one_line_error(
        elsewhere.err,
        "name the trading week with --week DATE: cannot read it off the file here (/in/the/pod/week.csv: no such file)",
    )
    # Outside file ingest, the week is never guessed.
    source = spine("run", INGEST, "--tier", "OTC", "--source", "finra-api")
    assert source.code == 2
    _one_line_error(source.err, "name the trading week with --week DATE")


def test_unknown_domain_for_doctor_exits_2(spine: Spine) -> None:
    result = spine("doctor", "finra.otc", "--weeks", "2")
    assert result.code == 2
    _one_line_error(result.err, "unknown domain 'finra.otc'")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ("work", "list"),
        ("run", INGEST, "--week-ending", "2025-12-15", "--tier", "OTC", "--source", "finra-api"),
        ("db", "upgrade"),
    ],
)
def test_unreachable_database(spine: Spine, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    monkeypatch.setenv("SPINE_DATABASE_URL", f"postgresql://spine:secret@127.0.0.1:{_closed_port()}/spine")
    monkeypatch.setenv("SPINE_DB_CONNECT_TIMEOUT", "2")
    result = spine(*args)
    assert result.code == 3
    _one_line_error(result.err, "cannot reach PostgreSQL at 127.0.0.1:")
    assert "secret" not in result.err  # the password never reaches a message


def test_doctor_exit_code_2_when_database_unreachable(spine: Spine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINE_DATABASE_URL", f"postgresql://127.0.0.1:{_closed_port()}/spine")
    monkeypatch.setenv("SPINE_DB_CONNECT_TIMEOUT", "2")
    result = spine("doctor", "finra.otc_transparency", "--weeks", "4")
    assert result.code == 2
    _one_line_error(result.err, "cannot reach PostgreSQL")


def test_not_a_postgres_url(spine: Spine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINE_DATABASE_URL", "mysql://u@h/db")
    result = spine("work", "list")
    assert result.code == 2
    _one_line_error(result.err, "must be a PostgreSQL URL")


def test_bad_header_file_fails_cleanly_and_writes_nothing(spine: Spine, tmp_path: Path) -> None:
    path = write_sample_week(tmp_path / "w.csv", __import__("datetime").date(2025, 12, 15), Tier.OTC, symbols=5)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace("MPID", "MPlD"), *lines[1:]]) + "\n")
    result = spine("run", INGEST, "--week-ending", "2025-12-15", "--tier", "OTC", "--file", str(path))
    assert result.code == 4
    _one_line_error(result.err, "bad header")
    captures = spine("query", "captures", "--week-ending", "2025-12-15", "--tier", "OTC", "--format", "json")
    assert captures.code == 0
    assert captures.json() == []


def test_wrong_week_file_fails_cleanly_and_writes_nothing(spine: Spine, tmp_path: Path) -> None:
    from datetime import date

    path = write_sample_week(tmp_path / "w.csv", date(2025, 11, 3), Tier.OTC, symbols=5)  # published 2025-12-08
    result = spine("run", INGEST, "--week", "2025-11-10", "--tier", "OTC", "--file", str(path))
    assert result.code == 4
    _one_line_error(result.err, "published on 2025-12-08", "OTC week 2025-11-10 on 2025-12-15", "use --week 2025-11-03")
    captures = spine("query", "captures", "--week", "2025-11-10", "--tier", "OTC", "--format", "json")
    assert captures.json() == []


def test_finra_api_answering_500_three_times(spine: Spine, finra_api: object) -> None:
    from tests.support.finra_api import FinraApi

    assert isinstance(finra_api, FinraApi)
    finra_api.fail(500, times=3)
    result = spine("run", INGEST, "--week-ending", "2025-12-15", "--tier", "OTC", "--source", "finra-api")
    assert result.code == 5
    _one_line_error(result.err, "500", "three times")
    assert len(finra_api.requests) == 3
    runs = spine("query", "captures", "--week-ending", "2025-12-15", "--tier", "OTC", "--format", "json")
    assert runs.json() == []


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("doctor", "finra.otc_transparency", "--weeks", "many"), 2, "Invalid value for '--weeks'"),
        (("work", "enqueue"), 2, "Missing argument"),
        (("work", "list", "--format", "yaml"), 2, "Invalid value for '--format'"),
        (("run", "--nope"), 2, "No such option"),
    ],
)
def test_usage_errors_are_usage_messages_not_tracebacks(
    spine: Spine, args: tuple[str, ...], code: int, fragment: str
) -> None:
    result = spine(*args)
    assert result.code == code
    assert fragment in result.err
    assert "Traceback" not in result.err


def test_every_kind_of_error_has_its_own_exit_code() -> None:
    import market_spine.kube.client  # noqa: F401  (KubeError is defined there)
    from market_spine.errors import SpineError, _all_errors

    # A subclass may share its parent's code on purpose (NotPublishedYet is a SourceUnavailable);
    # a class that sets its own code must not reuse another's.
    own = [e for e in _all_errors(SpineError) if "exit_code" in vars(e)]
    codes = [e.exit_code for e in own]
    assert len(codes) == len(set(codes)), {e.__name__: e.exit_code for e in own}


def test_an_unusable_data_directory_is_one_line_with_exit_code_2(
    spine: Spine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SPINE_DATABASE_URL")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    someone_elses = tmp_path / "photos"
    someone_elses.mkdir()
    (someone_elses / "holiday.jpg").write_bytes(b"\xff\xd8")
    cases = {
        a_file: "is a file, not a folder",
        a_file / "pgdata": "cannot be created: ",
        someone_elses: "holds other files, not a PostgreSQL data folder",
    }
    for folder, fragment in cases.items():
        monkeypatch.setenv("SPINE_DATA_DIR", str(folder))
        result = spine("work", "list")
        assert result.code == 2, result.err
        _one_line_error(result.err, f"the embedded PostgreSQL's data folder {folder} (SPINE_DATA_DIR)", fragment)
    assert sorted(p.name for p in someone_elses.iterdir()) == ["holiday.jpg"]  # left as it was
