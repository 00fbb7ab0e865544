"""A local HTTP server that answers like FINRA's Query API (``otcMarket/weeklySummary``).

It serves ``POST /data/group/otcMarket/name/weeklySummary`` like FINRA: a JSON list of records keyed
by the weekly file's column names, ``limit``/``offset`` paging, a ``Record-Total`` header, equality
``compareFilters`` (a filter on a field the records lack is ignored, so plain sample records
serve every tier), and an optional OAuth token endpoint. Tests script failures ahead of the
normal answers (``fail(503, times=3)``, or ``script`` for headers such as Retry-After).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

DATA_PATH = "/data/group/otcMarket/name/weeklySummary"
TOKEN_PATH = "/oauth2/token"


def finra_shaped(records: list[dict[str, str]], tier_id: str = "T1") -> list[dict[str, Any]]:
    """Sample rows as FINRA's API returns them: numbers as numbers, plus FINRA's extra fields."""
    out: list[dict[str, Any]] = []
    for record in records:
        out.append(
            {
                **record,
                "totalWeeklyShareQuantity": int(record["totalWeeklyShareQuantity"]),
                "totalWeeklyTradeCount": int(record["totalWeeklyTradeCount"]),
                "tierIdentifier": tier_id,
                "summaryTypeCode": "ATS_W_SMBL_FIRM",
                "weekStartDate": "2025-12-01",
                "productTypeCode": "EQUITY",
            }
        )
    return out


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


class FinraApi:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.script: list[Answer] = []  # answered first, one per data request
        self.requests: list[Seen] = []
        self.max_page: int | None = None  # a server-side page cap below the client's limit
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
        return [r for r in self.requests if r.path == DATA_PATH]

    def _answer(self, path: str, headers: dict[str, str], body: Any) -> Answer:
        with self._lock:
            self.requests.append(Seen(path, headers, body))
            if path == TOKEN_PATH:
                assert self.credentials is not None
                expected = base64.b64encode(":".join(self.credentials).encode()).decode()
                if headers.get("authorization") != f"Basic {expected}":
                    return Answer(401, body={"error": "invalid_client"})
                return Answer(200, body={"access_token": self.token, "token_type": "bearer", "expires_in": 1800})
            if path != DATA_PATH:
                return Answer(404, body={"message": f"no dataset at {path}"})
            if self.script:
                return self.script.pop(0)
            if self.credentials and headers.get("authorization") != f"Bearer {self.token}":
                return Answer(401, body={"message": "Invalid or missing token"})
        wanted = {f["fieldName"]: f["fieldValue"] for f in body.get("compareFilters", [])}
        matching = [r for r in self.records if all(str(r[k]) == v for k, v in wanted.items() if k in r)]
        limit = int(body.get("limit", 5000))
        if self.max_page is not None:
            limit = min(limit, self.max_page)
        offset = int(body.get("offset", 0))
        page_headers = {"Record-Total": str(len(matching))} if self.send_total else {}
        return Answer(200, page_headers, matching[offset : offset + limit])

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
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
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
