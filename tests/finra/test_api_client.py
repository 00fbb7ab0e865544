"""The FINRA Query API client against a real local HTTP server answering in FINRA's shape.

The server (``tests/support/finra_api.py``) publishes weeks built from the real weekly files,
mixing every ``summaryTypeCode``, and answers like FINRA: ``fields`` projection, ``EQUAL``
filters, pages of at most 5,000 rows with ``Record-Total``, 204 when nothing matches, and a
historic dataset that refuses filters it does not allow. Tests script failures (429 with
Retry-After, 500s, 4xx) ahead of the normal answers. Sleeps are recorded, never slept.
"""

from __future__ import annotations

import math
import socket
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from market_spine.core.partitions import Tier
from market_spine.core.stages import INGEST, NORMALIZE
from market_spine.db.schema import FINRA_API_COLUMNS, captures, core_manifest, raw
from market_spine.errors import NotPublishedYet, OutsideDataWindow, SourceUnavailable, UsageError
from market_spine.finra.api import FIELDS, FinraApiClient, TokenBucket
from market_spine.finra.files import API_FIELDS, HEADER, weekly_from_records
from market_spine.finra.sample import render_records, sample_records
from tests.pipelines.helpers import NOW, count, run
from tests.support.finra_api import (
    DATA_PATH,
    HISTORIC_PATH,
    HISTORIC_WEEK,
    OTC_WEEK,
    T1_HOLIDAY_WEEK,
    T1_WEEK,
    TOKEN_PATH,
    Answer,
    FinraApi,
)

WEEK = T1_WEEK  # a generated NMS Tier 1 week (published 2025-12-15)
TIER = Tier.NMS_TIER_1
TODAY = date(2025, 12, 16)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(base: str, sleeps: Sleeps, **options: Any) -> FinraApiClient:
    options.setdefault("rate_per_second", 1000.0)
    options.setdefault("today", lambda: TODAY)
    return FinraApiClient(base, sleep=sleeps, **options)


def projected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the client asks for them: FINRA's ``fields`` projection."""
    return [{name: row.get(name) for name in FIELDS} for row in rows]


def _text(value: Any) -> str | None:
    """A JSON value as raw keeps it: text, integral numbers without '.0' (FINRA may send 1234.0)."""
    if value is None:
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# --- the request FINRA gets -------------------------------------------------------------------------


def test_a_week_is_asked_for_by_trading_week_tier_and_ats_rows(finra: FinraApi) -> None:
    """Acceptance: the exact JSON body, and only the ATS venue rows of the week and tier come back."""
    with client(finra.url, Sleeps()) as api:
        fetched = api.fetch_week(OTC_WEEK, Tier.OTC)
    first = finra.data_requests()[0]
    assert first.path == DATA_PATH
    assert first.headers["accept"] == "application/json"
    assert first.body == {
        "limit": 5000,
        "offset": 0,
        "fields": [
            "tierDescription",
            "issueSymbolIdentifier",
            "issueName",
            "marketParticipantName",
            "MPID",
            "totalWeeklyShareQuantity",
            "totalWeeklyTradeCount",
            "lastUpdateDate",
            "weekStartDate",
            "summaryTypeCode",
            "initialPublishedDate",
            "lastReportedDate",
            "tierIdentifier",
            "firmCRDNumber",
            "productTypeCode",
            "totalNotionalSum",
        ],
        "compareFilters": [
            {"compareType": "EQUAL", "fieldName": "weekStartDate", "fieldValue": "2025-11-10"},
            {"compareType": "EQUAL", "fieldName": "tierIdentifier", "fieldValue": "OTCE"},
            {"compareType": "EQUAL", "fieldName": "summaryTypeCode", "fieldValue": "ATS_W_SMBL_FIRM"},
        ],
    }
    expected = finra.venue_rows(OTC_WEEK, Tier.OTC)
    assert fetched.records == projected(expected)
    assert {(r["weekStartDate"], r["tierIdentifier"], r["summaryTypeCode"]) for r in fetched.records} == {
        ("2025-11-10", "OTCE", "ATS_W_SMBL_FIRM")
    }
    # The double publishes other row kinds for the week too: the filter is what kept them out.
    assert len([r for r in finra.rows if r["weekStartDate"] == "2025-11-10" and r["tierIdentifier"] == "OTCE"]) > len(
        expected
    )
    seen = finra.data_requests()
    assert [r.body["offset"] for r in seen] == [5000 * n for n in range(math.ceil(len(expected) / 5000))]
    assert fetched.dataset == "weeklySummary"
    assert fetched.source == (
        f"{finra.url}{DATA_PATH}?weekStartDate=2025-11-10&tierIdentifier=OTCE&summaryTypeCode=ATS_W_SMBL_FIRM"
    )


def test_the_lower_case_compare_type_of_old_is_refused_by_the_double(finra: FinraApi) -> None:
    body = {"compareFilters": [{"compareType": "equal", "fieldName": "tierIdentifier", "fieldValue": "OTCE"}]}
    answer = httpx.post(finra.url + DATA_PATH, json=body, headers={"Accept": "application/json"})
    assert (answer.status_code, answer.json()) == (400, {"message": "Invalid compareType 'equal'"})


def test_a_week_older_than_twelve_months_comes_from_the_historic_dataset(finra: FinraApi) -> None:
    with client(finra.url, Sleeps(), today=lambda: date(2026, 1, 21)) as api:
        fetched = api.fetch_week(HISTORIC_WEEK, Tier.OTC)
    (request,) = finra.data_requests()
    assert request.path == HISTORIC_PATH
    assert request.body["compareFilters"] == [
        {"compareType": "EQUAL", "fieldName": "weekStartDate", "fieldValue": "2024-06-03"},
        {"compareType": "EQUAL", "fieldName": "tierIdentifier", "fieldValue": "OTCE"},
    ]
    # FINRA cannot filter the row kind there: the client keeps the ATS venue rows only.
    assert fetched.records == projected(finra.venue_rows(HISTORIC_WEEK, Tier.OTC))
    assert fetched.dataset == "weeklySummaryHistoric"
    assert fetched.source.endswith(
        "weeklySummaryHistoric?weekStartDate=2024-06-03&tierIdentifier=OTCE&summaryTypeCode=ATS_W_SMBL_FIRM"
    )


def test_the_historic_dataset_refuses_a_row_kind_filter(finra: FinraApi) -> None:
    filters = FinraApiClient.filters(HISTORIC_WEEK, Tier.OTC)  # the current dataset's three filters
    answer = httpx.post(
        finra.url + HISTORIC_PATH, json={"compareFilters": filters}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json() == {"message": "Filtering on summaryTypeCode is not supported for weeklySummaryHistoric"}


def test_near_the_twelve_month_boundary_an_empty_dataset_is_followed_by_the_other(finra: FinraApi) -> None:
    finra.today = date(2026, 11, 20)  # FINRA has already moved week 2025-11-17 to the historic dataset
    with client(finra.url, Sleeps(), today=lambda: date(2026, 11, 10)) as api:
        fetched = api.fetch_week(date(2025, 11, 17), Tier.OTC)
    assert [r.path for r in finra.data_requests()][-1] == HISTORIC_PATH
    assert finra.data_requests()[0].path == DATA_PATH
    assert fetched.dataset == "weeklySummaryHistoric"
    assert len(fetched.records) == len(finra.venue_rows(date(2025, 11, 17), Tier.OTC))


# --- why a week has no rows ----------------------------------------------------------------------------


def test_a_week_not_published_yet_is_retryable_and_says_when(finra: FinraApi) -> None:
    finra.today = date(2026, 1, 19)
    with client(finra.url, Sleeps(), today=lambda: date(2026, 1, 19)) as api, pytest.raises(NotPublishedYet) as error:
        api.fetch_week(T1_HOLIDAY_WEEK, TIER)
    # MLK Day: FINRA publishes the week on the Tuesday.
    assert (
        str(error.value) == "FINRA API: NMS_TIER_1 week 2025-12-29 (T1) is not published yet (expected on 2026-01-20)"
    )
    assert error.value.retryable
    assert finra.data_requests()[0].body["compareFilters"][0]["fieldValue"] == "2025-12-29"


def test_a_published_week_is_fetched_on_the_tuesday_after_a_holiday(finra: FinraApi) -> None:
    with client(finra.url, Sleeps(), today=lambda: date(2026, 1, 20)) as api:
        fetched = api.fetch_week(T1_HOLIDAY_WEEK, TIER)
    assert {r["initialPublishedDate"] for r in fetched.records} == {"2026-01-20"}


def test_a_week_outside_finras_window_is_permanent(finra: FinraApi) -> None:
    with client(finra.url, Sleeps(), today=lambda: date(2026, 1, 21)) as api, pytest.raises(OutsideDataWindow) as error:
        api.fetch_week(date(2019, 1, 7), Tier.OTC)
    assert str(error.value) == (
        "FINRA API: OTC week 2019-01-07 (OTCE) is outside FINRA's data window (weeklySummary keeps 12 months, "
        "weeklySummaryHistoric about 4 years before that): no rows"
    )
    assert not error.value.retryable
    assert [r.path for r in finra.data_requests()] == [HISTORIC_PATH]


def test_a_published_week_without_rows_says_so(finra: FinraApi) -> None:
    finra.rows = [r for r in finra.rows if r["tierIdentifier"] != "T2"]
    with client(finra.url, Sleeps()) as api, pytest.raises(SourceUnavailable) as error:
        api.fetch_week(date(2025, 11, 10), Tier.NMS_TIER_2)
    assert type(error.value) is SourceUnavailable
    assert str(error.value) == (
        "FINRA API: NMS_TIER_2 week 2025-11-10 (T2) is published but empty (first published on 2025-12-15): "
        "no ATS_W_SMBL_FIRM rows in weeklySummary"
    )


def test_204_means_no_rows(finra: FinraApi) -> None:
    finra.script = [Answer(204)]
    with client(finra.url, Sleeps()) as api:
        assert api.weekly_summary(WEEK, TIER) == []


# --- pagination -------------------------------------------------------------------------------------


def test_pages_by_offset_until_record_total(finra: FinraApi) -> None:
    expected = projected(finra.venue_rows(WEEK, TIER))
    total = len(expected)
    assert total > 10
    sleeps = Sleeps()
    with client(finra.url, sleeps, page_size=5) as api:
        got = api.weekly_summary(WEEK, TIER)
    assert got == expected
    seen = finra.data_requests()
    assert [r.body["offset"] for r in seen] == list(range(0, total, 5))
    assert {r.body["limit"] for r in seen} == {5}
    assert sleeps == []
    # As rows, API records read exactly like the file's lines (numbers back to their text).
    week = weekly_from_records("api", got)
    assert week.lines == ["|".join(str(r[name]) for name in HEADER) for r in expected]
    assert week.line_numbers == list(range(1, len(got) + 1))
    assert week.api_values is not None
    assert week.api_values[0] == tuple(_text(got[0][f]) for f in API_FIELDS)


def test_keeps_paging_when_the_server_caps_pages_below_the_limit(finra: FinraApi) -> None:
    finra.max_page = 4
    expected = projected(finra.venue_rows(WEEK, TIER))
    with client(finra.url, Sleeps(), page_size=50) as api:
        got = api.weekly_summary(WEEK, TIER)
    assert got == expected
    assert [r.body["offset"] for r in finra.data_requests()] == list(range(0, len(expected), 4))


def test_without_record_total_a_short_page_is_the_last(finra: FinraApi) -> None:
    finra.send_total = False
    expected = projected(finra.venue_rows(WEEK, TIER))
    size = len(expected) - 1
    with client(finra.url, Sleeps(), page_size=size) as api:
        got = api.weekly_summary(WEEK, TIER)
    assert got == expected
    assert [r.body["offset"] for r in finra.data_requests()] == [0, size]


def test_rows_of_another_kind_are_dropped_even_if_finra_sends_them(finra: FinraApi) -> None:
    ours = finra.venue_rows(WEEK, TIER)
    finra.script = [
        Answer(
            200, {"Record-Total": "3"}, projected([ours[0], {**ours[1], "summaryTypeCode": "OTC_W_SMBL_FIRM"}, ours[2]])
        )
    ]
    with client(finra.url, Sleeps()) as api:
        assert api.weekly_summary(WEEK, TIER) == projected([ours[0], ours[2]])


# --- retries ----------------------------------------------------------------------------------------


def test_429_waits_as_told_by_retry_after_then_succeeds(finra: FinraApi) -> None:
    finra.script = [Answer(429, {"Retry-After": "7"}, {"message": "Rate limit exceeded"})]
    sleeps = Sleeps()
    with client(finra.url, sleeps) as api:
        assert api.weekly_summary(WEEK, TIER) == projected(finra.venue_rows(WEEK, TIER))
    assert sleeps == [7.0]
    assert len(finra.data_requests()) == 2


def test_5xx_backs_off_exponentially_then_succeeds(finra: FinraApi) -> None:
    finra.script = [Answer(503, body={"message": "busy"}), Answer(502, body=None)]
    sleeps = Sleeps()
    with client(finra.url, sleeps, backoff_seconds=1.5) as api:
        assert api.weekly_summary(WEEK, TIER) == projected(finra.venue_rows(WEEK, TIER))
    assert sleeps == [1.5, 3.0]


def test_500_three_times_is_source_unavailable_with_a_clear_message(finra: FinraApi) -> None:
    finra.script = [Answer(500, body={"message": "Internal Server Error"}) for _ in range(3)]
    sleeps = Sleeps()
    with client(finra.url, sleeps, retries=3) as api, pytest.raises(SourceUnavailable) as failure:
        api.weekly_summary(WEEK, TIER)
    assert str(failure.value) == (
        "FINRA API answered 500 three times for otcMarket/weeklySummary week 2025-11-24 tier NMS_TIER_1 "
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
    assert str(failure.value).startswith(
        f"FINRA refused the request (Field 'tierIdentifier' rejected ({status})): HTTP {status} for "
        "otcMarket/weeklySummary week 2025-11-24 tier NMS_TIER_1 (offset 0)"
    )
    assert "\n" not in str(failure.value)
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
    expected = projected(finra.venue_rows(WEEK, TIER))
    clock = FakeClock()
    pages = -(-len(expected) // 20)
    assert pages >= 4
    with FinraApiClient(
        finra.url, rate_per_second=2.0, page_size=20, sleep=clock.sleep, clock=clock, today=lambda: TODAY
    ) as api:
        assert api.weekly_summary(WEEK, TIER) == expected
    assert clock.sleeps == [0.5] * (pages - 2)


def test_oauth_client_credentials_are_used_when_configured(finra: FinraApi) -> None:
    finra.credentials = ("spine-client", "s3cret")
    with client(
        finra.url,
        Sleeps(),
        page_size=40,
        client_id="spine-client",
        client_secret="s3cret",
        token_url=finra.url + TOKEN_PATH,
    ) as api:
        assert api.weekly_summary(WEEK, TIER) == projected(finra.venue_rows(WEEK, TIER))
    assert [r.path for r in finra.requests].count(TOKEN_PATH) == 1  # one token for every page
    assert len(finra.data_requests()) >= 3
    assert {r.headers["authorization"] for r in finra.data_requests()} == {"Bearer token-abc"}


def test_without_credentials_no_token_is_requested(finra: FinraApi) -> None:
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


def test_ingest_from_the_api_keeps_every_finra_field_and_the_publication_range(
    engine: Engine, api_env: FinraApi, tmp_path: Path
) -> None:
    api_env.max_page = 40  # the week arrives in several pages
    venue_rows = api_env.venue_rows(WEEK, TIER)
    result = run(engine, INGEST, WEEK, TIER, params={"source": "finra-api"})

    assert result.row_count == len(venue_rows) == count(engine, raw)
    assert len(api_env.data_requests()) >= 3
    columns = [raw.c[name] for name in FINRA_API_COLUMNS]
    with engine.connect() as conn:
        stored = conn.execute(
            select(
                raw.c.source_file, raw.c.line_number, raw.c.record_hash, raw.c.issue_symbol_identifier, raw.c.mpid,
                raw.c.last_update_date, *columns,
            ).order_by(raw.c.line_number)
        ).all()  # fmt: skip
        stages = set(conn.execute(select(core_manifest.c.stage)).scalars())
        capture = conn.execute(select(captures)).one()
    assert {r.source_file for r in stored} == {
        f"{api_env.url}{DATA_PATH}?weekStartDate=2025-11-24&tierIdentifier=T1&summaryTypeCode=ATS_W_SMBL_FIRM"
    }
    assert [r.line_number for r in stored] == list(range(1, len(venue_rows) + 1))
    assert [(r.issue_symbol_identifier, r.mpid) for r in stored] == [
        (p["issueSymbolIdentifier"], p["MPID"]) for p in venue_rows
    ]
    # Every FINRA field received is kept as text, NULL where FINRA sent none.
    first = stored[0]
    assert {name: getattr(first, name) for name in FINRA_API_COLUMNS} == {
        "week_start_date": "2025-11-24",
        "summary_type_code": "ATS_W_SMBL_FIRM",
        "initial_published_date": "2025-12-15",
        "last_reported_date": "2025-12-12",
        "tier_identifier": "T1",
        "firm_crd_number": str(venue_rows[0]["firmCRDNumber"]),
        "product_type_code": "EQUITY",
        "total_notional_sum": str(int(venue_rows[0]["totalNotionalSum"])),
    }
    assert (capture.capture_id, capture.week, capture.tier, capture.row_count) == (
        result.capture_id, WEEK, "NMS_TIER_1", len(venue_rows),
    )  # fmt: skip
    assert (capture.published_from, capture.published_to) == (date(2025, 12, 15), date(2025, 12, 15))
    assert stages == {"RAW"}
    normalized = run(engine, NORMALIZE, WEEK, TIER)
    assert (normalized.row_count, normalized.rejected) == (len(venue_rows), 0)

    # The same week from a file hashes identically, line for line.
    path = tmp_path / "week.csv"
    plain = [{name: str(r[name]) for name in HEADER} for r in venue_rows]
    path.write_text(render_records(plain), encoding="utf-8")
    # Taken the next day: a second capture beside the first (a capture date still to come is refused).
    from_file = run(engine, INGEST, WEEK, TIER, params={"file": str(path)}, now=NOW + timedelta(days=1))
    with engine.connect() as conn:
        hashes = {
            capture: sorted(conn.execute(select(raw.c.record_hash).where(raw.c.capture_id == capture)).scalars())
            for capture in (result.capture_id, from_file.capture_id)
        }
        file_fields = conn.execute(select(*columns).where(raw.c.capture_id == from_file.capture_id).limit(1)).one()
    assert hashes[result.capture_id] == hashes[from_file.capture_id]
    assert len(set(hashes[result.capture_id])) == len(venue_rows)
    assert tuple(file_fields) == (None,) * len(FINRA_API_COLUMNS)  # a file carries none of them


def test_a_corrected_row_is_part_of_its_week_and_widens_the_publication_range(
    engine: Engine, api_env: FinraApi
) -> None:
    venue_rows = api_env.venue_rows(OTC_WEEK, Tier.OTC)
    assert {r["lastUpdateDate"] for r in venue_rows} == {"2025-12-15", "2025-12-19"}  # one corrected row
    result = run(engine, INGEST, OTC_WEEK, Tier.OTC, params={"source": "finra-api"}, now=NOW.replace(day=22))
    assert result.row_count == len(venue_rows)
    with engine.connect() as conn:
        capture = conn.execute(select(captures.c.published_from, captures.c.published_to)).one()
    assert tuple(capture) == (date(2025, 12, 15), date(2025, 12, 19))
    normalized = run(engine, NORMALIZE, OTC_WEEK, Tier.OTC, now=NOW.replace(day=22))
    assert (normalized.row_count, normalized.rejected) == (len(venue_rows), 0)


def test_ingest_from_a_failing_api_writes_nothing(engine: Engine, api_env: FinraApi) -> None:
    api_env.script = [Answer(500, body={"message": "Internal Server Error"}) for _ in range(3)]
    with pytest.raises(SourceUnavailable, match="FINRA API answered 500 three times for otcMarket/weeklySummary"):
        run(engine, INGEST, WEEK, TIER, params={"source": "finra-api"}, now=NOW)
    assert count(engine, raw) == 0
    assert count(engine, core_manifest) == 0
    assert count(engine, captures) == 0


def test_ingest_of_an_unpublished_week_is_not_published_yet(engine: Engine, api_env: FinraApi) -> None:
    api_env.today = NOW.date()  # FINRA publishes the week on 2025-12-22
    with pytest.raises(
        NotPublishedYet, match=r"OTC week 2025-11-17 \(OTCE\) is not published yet \(expected on 2025-12-22\)"
    ):
        run(engine, INGEST, date(2025, 11, 17), Tier.OTC, params={"source": "finra-api"}, now=NOW)
    assert count(engine, raw) == 0


def test_header_matches_the_api_field_names() -> None:
    # The API's record keys are the file's column names: one list serves both.
    assert set(HEADER) <= set(FIELDS)
    assert set(API_FIELDS) <= set(FIELDS)
    assert len(API_FIELDS) == len(FINRA_API_COLUMNS)


def test_unused_sample_records_are_finra_shaped() -> None:
    assert set(HEADER) == set(sample_records(WEEK, TIER, symbols=1)[0])
