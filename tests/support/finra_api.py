"""A local HTTP server that answers like FINRA's Query API (``otcMarket/weeklySummary``).

Tests queue the answers they want (``fail(503, times=3)``) and the server serves FINRA-shaped JSON
pages of the records it holds, honouring ``limit``/``offset`` and sending ``Record-Total``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FinraApi:
    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []
        self.failures: list[int] = []  # status codes to answer next, one per request
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, status: int, times: int = 1) -> None:
        self.failures.extend([status] * times)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                api.requests.append(body)
                if api.failures:
                    status = api.failures.pop(0)
                    payload = json.dumps({"error": f"simulated {status}"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                wanted = {f["fieldName"]: f["fieldValue"] for f in body.get("compareFilters", [])}
                matching = [r for r in api.records if all(r.get(k) == v for k, v in wanted.items() if k in r)]
                offset, limit = int(body.get("offset", 0)), int(body.get("limit", 5000))
                payload = json.dumps(matching[offset : offset + limit]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Record-Total", str(len(matching)))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def finra_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FinraApi]:
    api = FinraApi()
    api.start()
    monkeypatch.setenv("SPINE_FINRA_API_URL", api.url)
    monkeypatch.setenv("SPINE_FINRA_API_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("SPINE_FINRA_API_RATE_PER_SECOND", "1000")
    yield api
    api.stop()
