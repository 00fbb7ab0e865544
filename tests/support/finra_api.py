"""A local HTTP server that answers like FINRA's Query API (``otcMarket`` weekly summaries).

The test double of FINRA for every suite (the client's tests, ingest with ``--source finra-api``,
the seed scenarios, the operator). It serves, like FINRA:

- ``POST /data/group/otcMarket/name/weeklySummary`` (a rolling 12 months before :attr:`FinraApi.today`)
  and ``…/weeklySummaryHistoric`` (the weeks before that), each with the weeks published by then;
- a JSON list of records with FINRA's field names, numbers as JSON numbers, the ``fields``
  projection, ``limit``/``offset`` paging with pages capped at 5,000 rows (a larger ``limit`` is
  refused), a ``Record-Total`` header, and 204 with no body when nothing matches;
- ``compareFilters`` with ``compareType: "EQUAL"`` only; an unknown field is refused with 400, and
  the historic dataset refuses (400) a filter on anything but ``weekStartDate``,
  ``tierIdentifier``, ``historicalWeek`` and ``historicalMonth``, as FINRA documents;
- delimited text unless the request says ``Accept: application/json``;
- an optional OAuth token endpoint.

Its published data is built from the real weekly files in ``../shared/data/finra_otc/`` (the OTC
weeks 2025-11-10 and 2025-11-17) or, when that folder is absent, from the sample generator, plus
generated NMS Tier 1 / Tier 2 weeks. Every week mixes every ``summaryTypeCode`` (ATS venue rows,
ATS per-symbol and per-firm totals, non-ATS firm rows and their totals), so a client that forgets
a filter gets rows it must not use. Rows carry ``weekStartDate``, ``initialPublishedDate`` and
``lastUpdateDate``: one OTC row of 2025-11-10 was corrected on 2025-12-19 (after first publication
on 2025-12-15), and the Tier 1 week of 2025-12-29 was published on Tuesday 2026-01-20, the day
after Martin Luther King Jr. Day. Tests script failures ahead of the normal answers
(``fail(503, times=3)``, or ``script`` for headers such as Retry-After).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from market_spine.core.partitions import FINRA_TIER_IDS, Tier
from market_spine.finra.files import HEADER, read_weekly
from market_spine.finra.sample import sample_records
from market_spine.finra.schedule import finra_calendar

BASE_PATH = "/data/group/otcMarket/name/"
DATA_PATH = BASE_PATH + "weeklySummary"
HISTORIC_PATH = BASE_PATH + "weeklySummaryHistoric"
TOKEN_PATH = "/oauth2/token"
PAGE_CAP = 5000
ATS = "ATS_W_SMBL_FIRM"
HISTORIC_FILTERS = frozenset({"weekStartDate", "tierIdentifier", "historicalWeek", "historicalMonth"})
FIELDS = (
    "tierIdentifier",
    "tierDescription",
    "issueSymbolIdentifier",
    "issueName",
    "marketParticipantName",
    "MPID",
    "firmCRDNumber",
    "productTypeCode",
    "summaryTypeCode",
    "summaryStartDate",
    "weekStartDate",
    "totalWeeklyTradeCount",
    "totalWeeklyShareQuantity",
    "totalNotionalSum",
    "initialPublishedDate",
    "lastUpdateDate",
    "lastReportedDate",
)
REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "finra_otc"

# The weeks the double publishes: (week, tier, first publication day, real file with its rows).
OTC_WEEK = date(2025, 11, 10)  # finra_otc_weekly_otc_20251215.csv
OTC_NEXT_WEEK = date(2025, 11, 17)  # finra_otc_weekly_otc_20251222.csv
T1_WEEK = date(2025, 11, 24)  # Tier 1, published 2025-12-15 like OTC_WEEK
T2_WEEK = date(2025, 11, 10)  # Tier 2, published 2025-12-15
T1_HOLIDAY_WEEK = date(2025, 12, 29)  # +21 days is MLK Day 2026-01-19: published Tuesday 2026-01-20
HISTORIC_WEEK = date(2024, 6, 3)  # more than 12 months before TODAY: only in weeklySummaryHistoric
CORRECTED_ON = date(2025, 12, 19)  # one OTC_WEEK row was corrected on this day
TODAY = date(2026, 1, 21)  # the double's "today": decides which weeks are historic
NON_ATS_FIRMS = (("CDEL", "CITADEL SECURITIES LLC", 116797), ("VIRT", "VIRTU AMERICAS LLC", 149823))


def _crd(mpid: str) -> int:
    return int(hashlib.sha256(mpid.encode()).hexdigest()[:6], 16)


def finra_record(plain: dict[str, str], week: date, tier: Tier, published: date, kind: str = ATS) -> dict[str, Any]:
    """A weekly file's row as FINRA's API returns it: numbers as numbers, plus FINRA's fields."""
    return {
        **plain,
        "totalWeeklyShareQuantity": int(plain["totalWeeklyShareQuantity"]),
        "totalWeeklyTradeCount": int(plain["totalWeeklyTradeCount"]),
        "tierIdentifier": FINRA_TIER_IDS[tier],
        "summaryTypeCode": kind,
        "summaryStartDate": week.isoformat(),
        "weekStartDate": week.isoformat(),
        "initialPublishedDate": published.isoformat(),
        "lastReportedDate": (published - timedelta(days=3)).isoformat(),
        "firmCRDNumber": _crd(plain["MPID"]) if plain.get("MPID") else None,
        "productTypeCode": "EQUITY",
        "totalNotionalSum": None if tier is Tier.OTC else float(int(plain["totalWeeklyShareQuantity"]) * 25),
    }


def other_kinds(ats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows FINRA publishes beside the ATS venue rows of a week: per-symbol and per-firm ATS
    totals, and non-ATS (OTC) firm rows for some symbols with their totals."""
    out: list[dict[str, Any]] = []
    blank = {"MPID": None, "marketParticipantName": None, "firmCRDNumber": None}
    by_symbol: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_firm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in ats:
        by_symbol[row["issueSymbolIdentifier"]].append(row)
        by_firm[row["MPID"]].append(row)

    def total(rows: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return {
            **rows[0],
            "totalWeeklyShareQuantity": sum(r["totalWeeklyShareQuantity"] for r in rows),
            "totalWeeklyTradeCount": sum(r["totalWeeklyTradeCount"] for r in rows),
            **fields,
        }

    for symbol_rows in by_symbol.values():
        out.append(total(symbol_rows, summaryTypeCode="ATS_W_SMBL", **blank))
    for firm_rows in by_firm.values():
        out.append(total(firm_rows, summaryTypeCode="ATS_W_FIRM", issueSymbolIdentifier=None, issueName=None))
    for index, (_symbol, symbol_rows) in enumerate(sorted(by_symbol.items())):
        if index % 3:
            continue  # wholesalers trade some symbols
        mpid, name, crd = NON_ATS_FIRMS[index % 2]
        base = symbol_rows[0]
        shares = 3 * base["totalWeeklyShareQuantity"] + 100
        firm = {**base, "MPID": mpid, "marketParticipantName": name, "firmCRDNumber": crd}
        firm |= {"totalWeeklyShareQuantity": shares, "totalWeeklyTradeCount": shares // 50 + 1}
        out.append({**firm, "summaryTypeCode": "OTC_W_SMBL_FIRM"})
        out.append({**firm, "summaryTypeCode": "OTC_W_SMBL", **blank})
    return out


def _plain_week(week: date, tier: Tier, real_file: str | None, seed: int) -> list[dict[str, str]]:
    path = REAL_DATA / real_file if real_file else None
    if path is not None and path.is_file():
        return [
            {name: value or "" for name, value in zip(HEADER, row.fields, strict=True)}
            for row in read_weekly(path).rows()
        ]
    return sample_records(week, tier, symbols=60, seed=seed)


@cache
def _published() -> tuple[tuple[tuple[str, Any], ...], ...]:
    calendar = finra_calendar()
    weeks = (
        (OTC_WEEK, Tier.OTC, "finra_otc_weekly_otc_20251215.csv"),
        (OTC_NEXT_WEEK, Tier.OTC, "finra_otc_weekly_otc_20251222.csv"),
        (T1_WEEK, Tier.NMS_TIER_1, None),
        (T2_WEEK, Tier.NMS_TIER_2, None),
        (T1_HOLIDAY_WEEK, Tier.NMS_TIER_1, None),
        (HISTORIC_WEEK, Tier.OTC, None),
    )
    rows: list[dict[str, Any]] = []
    for seed, (week, tier, real_file) in enumerate(weeks):
        published = calendar.first_publication(week, tier)
        ats = [finra_record(p, week, tier, published) for p in _plain_week(week, tier, real_file, seed)]
        if week == OTC_WEEK and tier is Tier.OTC:
            ats[0] = {**ats[0], "lastUpdateDate": CORRECTED_ON.isoformat()}  # FINRA corrected this row
        rows += ats + other_kinds(ats)
    return tuple(tuple(row.items()) for row in rows)


def published_rows() -> list[dict[str, Any]]:
    """Every row the double publishes (fresh dicts: tests may change them)."""
    return [dict(items) for items in _published()]


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


def _refuse(message: str) -> Answer:
    return Answer(400, body={"message": message})


class FinraApi:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = published_rows()  # both datasets; split by ``today``
        self.today = TODAY
        self.script: list[Answer] = []  # answered first, one per data request
        self.requests: list[Seen] = []
        self.max_page = PAGE_CAP  # FINRA's cap; tests lower it to force paging
        self.send_total = True
        self.credentials: tuple[str, str] | None = None  # when set, data requests need a bearer token
        self.token = "token-abc"
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def data_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(BASE_PATH)]

    def venue_rows(self, week: date, tier: Tier) -> list[dict[str, Any]]:
        """The ATS venue rows (``ATS_W_SMBL_FIRM``) published for a week: what an ingest must keep."""
        wanted = (week.isoformat(), FINRA_TIER_IDS[tier], ATS)
        return [r for r in self.rows if (r["weekStartDate"], r["tierIdentifier"], r["summaryTypeCode"]) == wanted]

    def publish(self, week: date, tier: Tier, plain: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Replace the week's rows with ``plain`` (weekly-file rows) as ATS venue rows plus the other
        kinds; return the ATS rows."""
        published = finra_calendar().first_publication(week, tier)
        ats = [finra_record(p, week, tier, published) for p in plain]
        key = (week.isoformat(), FINRA_TIER_IDS[tier])
        self.rows = [r for r in self.rows if (r["weekStartDate"], r["tierIdentifier"]) != key] + ats + other_kinds(ats)
        return ats

    def _dataset(self, path: str) -> list[dict[str, Any]] | None:
        """The rows of a dataset as of :attr:`today`: published by then, and in the rolling 12
        months (``weeklySummary``) or before them (``weeklySummaryHistoric``)."""
        boundary = (self.today - timedelta(days=365)).isoformat()
        out = [r for r in self.rows if r["initialPublishedDate"] <= self.today.isoformat()]
        if path == DATA_PATH:
            return [r for r in out if r["weekStartDate"] >= boundary]
        if path == HISTORIC_PATH:
            return [r for r in out if r["weekStartDate"] < boundary]
        return None

    def _answer(self, path: str, headers: dict[str, str], body: Any) -> Answer:
        with self._lock:
            self.requests.append(Seen(path, headers, body))
            if path == TOKEN_PATH:
                assert self.credentials is not None
                expected = base64.b64encode(":".join(self.credentials).encode()).decode()
                if headers.get("authorization") != f"Basic {expected}":
                    return Answer(401, body={"error": "invalid_client"})
                return Answer(200, body={"access_token": self.token, "token_type": "bearer", "expires_in": 1800})
            records = self._dataset(path)
            if records is None:
                return Answer(404, body={"message": f"no dataset at {path}"})
            if self.script:
                return self.script.pop(0)
            if self.credentials and headers.get("authorization") != f"Bearer {self.token}":
                return Answer(401, body={"message": "Invalid or missing token"})
        return self._query(path, records, body)

    def _query(self, path: str, records: list[dict[str, Any]], body: Any) -> Answer:
        wanted: dict[str, str] = {}
        for item in body.get("compareFilters", []):
            name, kind = item.get("fieldName"), item.get("compareType")
            if kind != "EQUAL":
                return _refuse(f"Invalid compareType {kind!r}")
            if name not in FIELDS:
                return _refuse(f"Invalid field name {name!r}")
            if path == HISTORIC_PATH and name not in HISTORIC_FILTERS:
                return _refuse(f"Filtering on {name} is not supported for weeklySummaryHistoric")
            wanted[name] = str(item.get("fieldValue"))
        fields = body.get("fields") or list(FIELDS)
        unknown = [name for name in fields if name not in FIELDS]
        if unknown:
            return _refuse(f"Invalid field name(s) in fields: {', '.join(unknown)}")
        limit = int(body.get("limit", 1000))
        if limit > PAGE_CAP:
            return _refuse(f"limit must be at most {PAGE_CAP}")
        limit = min(limit, self.max_page)
        offset = int(body.get("offset", 0))
        matching = [r for r in records if all(str(r.get(k)) == v for k, v in wanted.items())]
        page = [{name: r.get(name) for name in fields} for r in matching[offset : offset + limit]]
        page_headers = {"Record-Total": str(len(matching))} if self.send_total else {}
        if not page:
            return Answer(204, page_headers)
        return Answer(200, page_headers, page)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw_body = self.rfile.read(length) if length else b""
                body = json.loads(raw_body) if raw_body.startswith(b"{") else {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = fake._answer(self.path.split("?")[0], headers, body)
                if answer.body is None:
                    payload = b""
                elif headers.get("accept") != "application/json" and isinstance(answer.body, list):
                    # Without Accept: application/json, FINRA answers delimited text.
                    keys = list(answer.body[0]) if answer.body else []
                    lines = [",".join(keys), *(",".join(str(r[k]) for k in keys) for r in answer.body)]
                    payload = "\n".join(lines).encode()
                else:
                    payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` data requests with ``status``."""
        self.script.extend(Answer(status, body={"message": f"simulated {status}"}) for _ in range(times))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def finra() -> Iterator[FinraApi]:
    server = FinraApi()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def finra_api(finra: FinraApi, monkeypatch: pytest.MonkeyPatch) -> FinraApi:
    """The server, with ``spine`` pointed at it (no waits between retries, no rate limit)."""
    monkeypatch.setenv("SPINE_FINRA_API_URL", finra.url)
    monkeypatch.setenv("SPINE_FINRA_API_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("SPINE_FINRA_API_RATE_PER_SECOND", "1000")
    return finra
