"""The FINRA Query API client against a real local HTTP server answering in FINRA's shape.

The server (``http.server`` in a thread on 127.0.0.1) serves ``POST
/data/group/otcMarket/name/weeklySummary`` like FINRA: a JSON list of records keyed by the weekly
file's column names plus FINRA's extra fields, numbers as JSON numbers, ``limit``/``offset`` paging,
a ``Record-Total`` header, equality ``compareFilters``. Tests script failures (429 with
Retry-After, 500s, 4xx) ahead of the normal answers. Sleeps are recorded, never slept.
"""

from __future__ import annotations

import socket
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier
from market_spine.core.stages import INGEST, NORMALIZE
from market_spine.db.schema import core_manifest, raw
from market_spine.errors import SourceUnavailable, UsageError
from market_spine.finra.api import FinraApiClient, TokenBucket
from market_spine.finra.files import HEADER, weekly_from_records
from market_spine.finra.sample import render_records, sample_records
from tests.pipelines.helpers import NOW, count, run
from tests.support.finra_api import DATA_PATH, TOKEN_PATH, Answer, FinraApi, finra_shaped

WEEK = date(2025, 12, 15)
TIER = Tier.NMS_TIER_1


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(base: str, sleeps: Sleeps, **options: Any) -> FinraApiClient:
    options.setdefault("rate_per_second", 1000.0)
    return FinraApiClient(base, sleep=sleeps, **options)


def _records(symbols: int = 8) -> list[dict[str, Any]]:
    return finra_shaped(sample_records(WEEK, TIER, symbols=symbols, seed=2))


# --- pagination -------------------------------------------------------------------------------------


def test_pages_by_offset_until_record_total(finra: FinraApi) -> None:
    finra.records = _records(symbols=8)
    total = len(finra.records)
    assert total > 10
    sleeps = Sleeps()
    with client(finra.url, sleeps, page_size=5) as api:
        got = api.weekly_summary(WEEK, TIER)
    assert got == finra.records
    seen = finra.data_requests()
    assert [r.body["offset"] for r in seen] == list(range(0, total, 5))
    assert len(seen) >= 3
    assert {r.body["limit"] for r in seen} == {5}
    assert seen[0].body["compareFilters"] == [
        {"compareType": "equal", "fieldName": "lastUpdateDate", "fieldValue": "2025-12-15"},
        {"compareType": "equal", "fieldName": "tierIdentifier", "fieldValue": "T1"},
    ]
    assert seen[0].headers["accept"] == "application/json"
    assert sleeps == []
    # As rows, API records read exactly like the file's lines (numbers back to their text).
    week = weekly_from_records("api", got)
    assert week.lines == render_records(sample_records(WEEK, TIER, symbols=8, seed=2)).splitlines()[1:]
    assert week.line_numbers == list(range(1, len(got) + 1))


def test_keeps_paging_when_the_server_caps_pages_below_the_limit(finra: FinraApi) -> None:
    finra.records = _records(symbols=8)
    finra.max_page = 4
    with client(finra.url, Sleeps(), page_size=50) as api:
        got = api.weekly_summary(WEEK, TIER)
    assert got == finra.records
    assert [r.body["offset"] for r in finra.data_requests()] == list(range(0, len(finra.records), 4))


def test_without_record_total_a_short_page_is_the_last(finra: FinraApi) -> None:
    finra.records = _records(symbols=4)
    finra.send_total = False
    size = len(finra.records) - 1
    with client(finra.url, Sleeps(), page_size=size) as api:
        got = api.weekly_summary(WEEK, TIER)
    assert got == finra.records
    assert [r.body["offset"] for r in finra.data_requests()] == [0, size]


def test_filters_select_the_tier_and_aggregates_are_skipped(finra: FinraApi) -> None:
    ours = _records(symbols=3)
    other_tier = finra_shaped(sample_records(WEEK, Tier.NMS_TIER_2, symbols=3, seed=2), tier_id="T2")
    aggregate = {**ours[0], "MPID": "", "summaryTypeCode": "ATS_W_SMBL"}
    finra.records = [*ours, *other_tier, aggregate]
    with client(finra.url, Sleeps()) as api:
        assert api.weekly_summary(WEEK, TIER) == ours


def test_empty_body_means_no_rows(finra: FinraApi) -> None:
    finra.script = [Answer(200, body=None)]
    with client(finra.url, Sleeps()) as api:
        assert api.weekly_summary(WEEK, TIER) == []


# --- retries ----------------------------------------------------------------------------------------


def test_429_waits_as_told_by_retry_after_then_succeeds(finra: FinraApi) -> None:
    finra.records = _records(symbols=3)
    finra.script = [Answer(429, {"Retry-After": "7"}, {"message": "Rate limit exceeded"})]
    sleeps = Sleeps()
    with client(finra.url, sleeps) as api:
        assert api.weekly_summary(WEEK, TIER) == finra.records
    assert sleeps == [7.0]
    assert len(finra.data_requests()) == 2


def test_5xx_backs_off_exponentially_then_succeeds(finra: FinraApi) -> None:
    finra.records = _records(symbols=3)
    finra.script = [Answer(503, body={"message": "busy"}), Answer(502, body=None)]
    sleeps = Sleeps()
    with client(finra.url, sleeps, backoff_seconds=1.5) as api:
        assert api.weekly_summary(WEEK, TIER) == finra.records
    assert sleeps == [1.5, 3.0]


def test_500_three_times_is_source_unavailable_with_a_clear_message(finra: FinraApi) -> None:
    finra.script = [Answer(500, body={"message": "Internal Server Error"}) for _ in range(3)]
    sleeps = Sleeps()
    with client(finra.url, sleeps, retries=3) as api, pytest.raises(SourceUnavailable) as failure:
        api.weekly_summary(WEEK, TIER)
    assert str(failure.value) == (
        "FINRA API answered 500 three times for otcMarket/weeklySummary week 2025-12-15 tier NMS_TIER_1 "
        "(offset 0): Internal Server Error"
    )
    assert len(finra.data_requests()) == 3
    assert sleeps == [1.0, 2.0]  # no sleep after the last attempt


def test_mixed_failures_list_every_answer(finra: FinraApi) -> None:
    finra.script = [Answer(503), Answer(429, {"Retry-After": "0"}), Answer(500, body={"message": "boom"})]
    with client(finra.url, Sleeps()) as api, pytest.raises(SourceUnavailable, match=r"answers: 503, 429, 500\): boom"):
        api.weekly_summary(WEEK, TIER)


def test_retry_after_beyond_the_limit_gives_up_at_once(finra: FinraApi) -> None:
    finra.script = [Answer(429, {"Retry-After": "3600"}, {"message": "quota"})]
    sleeps = Sleeps()
    with client(finra.url, sleeps) as api, pytest.raises(SourceUnavailable, match="asked to retry after 3600 s"):
        api.weekly_summary(WEEK, TIER)
    assert sleeps == []
    assert len(finra.data_requests()) == 1


def test_unreachable_api_is_source_unavailable_after_retries() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    with client(f"http://127.0.0.1:{port}", sleeps) as api, pytest.raises(SourceUnavailable) as failure:
        api.weekly_summary(WEEK, TIER)
    assert str(failure.value).startswith(f"FINRA API at http://127.0.0.1:{port} did not answer three times for ")
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, UsageError), (404, UsageError), (403, SourceUnavailable)],
)
def test_other_4xx_fail_at_once_with_finras_message(finra: FinraApi, status: int, error: type[Exception]) -> None:
    finra.script = [Answer(status, body={"message": f"Field 'tierIdentifier' rejected ({status})"})]
    with client(finra.url, Sleeps()) as api, pytest.raises(error) as failure:
        api.weekly_summary(WEEK, TIER)
    assert f"({status}): Field 'tierIdentifier' rejected ({status})" in str(failure.value)
    assert len(finra.data_requests()) == 1


# --- rate limiting and authentication ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert clock.sleeps == [0.5, 0.5, 0.5]
    clock.now += 10  # idle time refills the bucket up to its burst, not beyond
    for _ in range(3):
        bucket.acquire()
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]


def test_client_requests_are_rate_limited(finra: FinraApi) -> None:
    finra.records = _records(symbols=8)
    clock = FakeClock()
    pages = -(-len(finra.records) // 4)
    assert pages >= 4
    with FinraApiClient(finra.url, rate_per_second=2.0, page_size=4, sleep=clock.sleep, clock=clock) as api:
        assert api.weekly_summary(WEEK, TIER) == finra.records
    assert clock.sleeps == [0.5] * (pages - 2)


def test_oauth_client_credentials_are_used_when_configured(finra: FinraApi) -> None:
    finra.records = _records(symbols=8)
    finra.credentials = ("spine-client", "s3cret")
    with client(
        finra.url,
        Sleeps(),
        page_size=6,
        client_id="spine-client",
        client_secret="s3cret",
        token_url=finra.url + TOKEN_PATH,
    ) as api:
        assert api.weekly_summary(WEEK, TIER) == finra.records
    assert [r.path for r in finra.requests].count(TOKEN_PATH) == 1  # one token for every page
    assert len(finra.data_requests()) >= 3
    assert {r.headers["authorization"] for r in finra.data_requests()} == {"Bearer token-abc"}


def test_without_credentials_no_token_is_requested(finra: FinraApi) -> None:
    finra.records = _records(symbols=2)
    with client(finra.url, Sleeps()) as api:
        api.weekly_summary(WEEK, TIER)
    assert all(r.path == DATA_PATH for r in finra.requests)
    assert all("authorization" not in r.headers for r in finra.requests)


# --- ingest with --source finra-api -----------------------------------------------------------------


@pytest.fixture
def api_env(finra: FinraApi, monkeypatch: pytest.MonkeyPatch) -> FinraApi:
    monkeypatch.setenv("SPINE_FINRA_API_URL", finra.url)
    monkeypatch.setenv("SPINE_FINRA_API_RATE_PER_SECOND", "1000")
    monkeypatch.setenv("SPINE_FINRA_API_BACKOFF_SECONDS", "0")
    monkeypatch.delenv("SPINE_FINRA_API_CLIENT_ID", raising=False)
    return finra


def test_ingest_from_the_api_writes_the_weeks_rows(engine: Engine, api_env: FinraApi, tmp_path: Path) -> None:
    plain = sample_records(WEEK, TIER, symbols=60, seed=9)
    api_env.records = finra_shaped(plain)
    api_env.max_page = 40  # FINRA-like cap: the week arrives in several pages
    result = run(engine, INGEST, WEEK, TIER, params={"source": "finra-api"})

    assert result.row_count == len(plain) == count(engine, raw)
    assert len(api_env.data_requests()) >= 3
    with engine.connect() as conn:
        stored = conn.execute(
            select(
                raw.c.source_file, raw.c.line_number, raw.c.record_hash, raw.c.issue_symbol_identifier, raw.c.mpid
            ).order_by(raw.c.line_number)
        ).all()
        stages = set(conn.execute(select(core_manifest.c.stage)).scalars())
    assert {r.source_file for r in stored} == {f"{api_env.url}{DATA_PATH}?lastUpdateDate=2025-12-15&tierIdentifier=T1"}
    assert [r.line_number for r in stored] == list(range(1, len(plain) + 1))
    assert [(r.issue_symbol_identifier, r.mpid) for r in stored] == [
        (p["issueSymbolIdentifier"], p["MPID"]) for p in plain
    ]
    assert stages == {"RAW"}
    normalized = run(engine, NORMALIZE, WEEK, TIER)
    assert (normalized.row_count, normalized.rejected) == (len(plain), 0)

    # The same week from a file hashes identically, line for line.
    path = tmp_path / "week.csv"
    path.write_text(render_records(plain), encoding="utf-8")
    from_file = run(engine, INGEST, WEEK, TIER, params={"file": str(path)}, capture_date=date(2025, 12, 17))
    with engine.connect() as conn:
        hashes = {
            capture: sorted(conn.execute(select(raw.c.record_hash).where(raw.c.capture_id == capture)).scalars())
            for capture in (result.capture_id, from_file.capture_id)
        }
    assert hashes[result.capture_id] == hashes[from_file.capture_id]
    assert len(set(hashes[result.capture_id])) == len(plain)


def test_ingest_from_a_failing_api_writes_nothing(engine: Engine, api_env: FinraApi) -> None:
    api_env.records = finra_shaped(sample_records(WEEK, TIER, symbols=5, seed=9))
    api_env.script = [Answer(500, body={"message": "Internal Server Error"}) for _ in range(3)]
    with pytest.raises(SourceUnavailable, match="FINRA API answered 500 three times for otcMarket/weeklySummary"):
        run(engine, INGEST, WEEK, TIER, params={"source": "finra-api"}, now=NOW)
    assert count(engine, raw) == 0
    assert count(engine, core_manifest) == 0


def test_ingest_of_an_unpublished_week_is_source_unavailable(engine: Engine, api_env: FinraApi) -> None:
    api_env.records = []
    with pytest.raises(SourceUnavailable, match="FINRA API has no rows for week 2025-12-15 tier NMS_TIER_1"):
        run(engine, INGEST, WEEK, TIER, params={"source": "finra-api"})
    assert count(engine, raw) == 0


def test_header_matches_the_api_field_names() -> None:
    # The API's record keys are the file's column names: one list serves both.
    assert set(HEADER) <= set(finra_shaped(sample_records(WEEK, TIER, symbols=1))[0])
