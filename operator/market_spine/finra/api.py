"""FINRA Query API client for the ``otcMarket/weeklySummary`` dataset (``--source finra-api``).

Called by ``pipelines.ingest``; tested against a local HTTP server that answers in FINRA's shape.
One request is ``POST {base}/data/group/otcMarket/name/weeklySummary`` with a JSON body
``{"limit", "offset", "compareFilters": [...]}``; FINRA answers a JSON list of objects keyed by the
weekly file's column names, and a ``Record-Total`` header. This client:

- pages by ``offset`` until a short page, an empty page, or ``Record-Total`` rows;
- limits its own request rate (a token bucket), because FINRA throttles with 429 anyway and a
  backfill should not spend its retries on self-inflicted throttling;
- retries 429, 5xx and connection failures with exponential backoff, honouring ``Retry-After``,
  and after ``retries`` attempts raises :class:`SourceUnavailable` saying what FINRA answered;
- turns other 4xx into a one-line error carrying FINRA's own message (retrying cannot fix them);
- optionally authenticates with OAuth client credentials (FINRA's public datasets need none).

The base URL comes from ``SPINE_FINRA_API_URL`` so that a proxy or a mirror can stand in for FINRA.
``sleep`` and ``clock`` are injectable so tests exercise backoff and rate limits without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from market_spine.config import Settings
from market_spine.core.partitions import Tier
from market_spine.errors import SourceUnavailable, UsageError

log = logging.getLogger(__name__)

DATASET_GROUP = "otcMarket"
DATASET_NAME = "weeklySummary"
DEFAULT_BASE_URL = "https://api.finra.org"
# FINRA's identity platform issues Query API tokens; a mirror that needs none leaves the client id unset.
DEFAULT_TOKEN_URL = "https://ews.fip.finra.org/fip/rest/ews/oauth2/access_token?grant_type=client_credentials"
MAX_PAGE_SIZE = 5000  # FINRA's largest synchronous page
TIER_IDENTIFIERS: dict[Tier, str] = {Tier.NMS_TIER_1: "T1", Tier.NMS_TIER_2: "T2", Tier.OTC: "OTC"}

Sleep = Callable[[float], None]
Clock = Callable[[], float]


def _times(count: int) -> str:
    return {1: "once", 2: "twice", 3: "three times"}.get(count, f"{count} times")


class TokenBucket:
    """At most ``rate`` requests per second on average, with bursts of up to ``burst`` requests."""

    def __init__(
        self, rate: float, *, burst: float | None = None, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; return the seconds slept."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        waited = 0.0
        if self._tokens < 1.0:
            waited = (1.0 - self._tokens) / self.rate
            self._sleep(waited)
            # Whatever the clock says after sleeping, the wait bought exactly one token.
            self._last = max(self._clock(), now + waited)
            self._tokens = 1.0
        self._tokens -= 1.0
        return waited


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_message(response: httpx.Response) -> str:
    """FINRA's own words for an error: the ``message``/``error`` of a JSON body, else the text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        for key in ("message", "error_description", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    text = " ".join(response.text.split())
    return text[:300] if text else response.reason_phrase or "no message"


class FinraApiClient:
    """A client for one dataset; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        rate_per_second: float = 5.0,
        retries: int = 3,
        page_size: int = MAX_PAGE_SIZE,
        timeout: float = 30.0,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        max_retry_after_seconds: float = 300.0,
        week_field: str = "lastUpdateDate",
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str = DEFAULT_TOKEN_URL,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 1:
            raise ValueError("retries must be at least 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1…{MAX_PAGE_SIZE}")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/data/group/{DATASET_GROUP}/name/{DATASET_NAME}"
        self.retries = retries
        self.page_size = page_size
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self.week_field = week_field
        self._credentials = (client_id, client_secret) if client_id and client_secret else None
        self._token_url = token_url
        self._token: str | None = None
        self._token_expires = 0.0
        self._sleep = sleep
        self._clock = clock
        self._bucket = TokenBucket(rate_per_second, clock=clock, sleep=sleep)
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
            headers={"Accept": "application/json", "User-Agent": "market-spine (FINRA OTC pipelines)"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FinraApiClient:
        options: dict[str, Any] = {
            "rate_per_second": settings.finra_api_rate_per_second,
            "retries": settings.finra_api_retries,
            "backoff_seconds": settings.finra_api_backoff_seconds,
            "client_id": settings.finra_api_client_id,
            "client_secret": settings.finra_api_client_secret,
        }
        # Optional: used when Settings declares it (SPINE_FINRA_API_TOKEN_URL), FINRA's otherwise.
        token_url = getattr(settings, "finra_api_token_url", None)
        if token_url:
            options["token_url"] = token_url
        options.update(overrides)
        return cls(settings.finra_api_url, **options)

    def __enter__(self) -> FinraApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- requests ------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds))

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """Send with rate limiting and retries; return a 2xx response or raise a one-line error."""
        answers: list[str] = []
        last_error = ""
        for attempt in range(1, self.retries + 1):
            self._bucket.acquire()
            delay = self._backoff(attempt)
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                answers.append("no answer")
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("FINRA API %s: attempt %d failed: %s", what, attempt, last_error)
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status == 429 or status >= 500:
                    answers.append(str(status))
                    last_error = _error_message(response)
                    asked = _retry_after(response)
                    if asked is not None:
                        if asked > self.max_retry_after_seconds:
                            raise SourceUnavailable(
                                f"FINRA API answered {status} for {what} and asked to retry after "
                                f"{asked:.0f} s (more than {self.max_retry_after_seconds:.0f} s); try later"
                            )
                        delay = asked
                    log.warning("FINRA API %s: attempt %d answered %d", what, attempt, status)
                else:
                    message = _error_message(response)
                    if status in (400, 404, 405, 422):
                        raise UsageError(f"FINRA API refused {what} at {url} ({status}): {message}")
                    raise SourceUnavailable(f"FINRA API refused {what} ({status}): {message}")
            if attempt < self.retries:
                self._sleep(delay)
        if all(answer == "no answer" for answer in answers):
            raise SourceUnavailable(
                f"FINRA API at {self.base_url} did not answer {_times(len(answers))} for {what}: {last_error}"
            )
        if len(set(answers)) == 1:
            raise SourceUnavailable(f"FINRA API answered {answers[0]} {_times(len(answers))} for {what}: {last_error}")
        raise SourceUnavailable(
            f"FINRA API failed {_times(len(answers))} for {what} (answers: {', '.join(answers)}): {last_error}"
        )

    def _auth_headers(self) -> dict[str, str]:
        if self._credentials is None:
            return {}
        if self._token is None or self._clock() >= self._token_expires:
            response = self._request("POST", self._token_url, "an access token", auth=self._credentials)
            try:
                body = response.json()
                token = str(body["access_token"])
                lifetime = float(body.get("expires_in", 1800))
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceUnavailable(f"FINRA token endpoint {self._token_url} answered without a token") from exc
            self._token = token
            self._token_expires = self._clock() + max(0.0, lifetime - 60.0)  # renew a minute early
        return {"Authorization": f"Bearer {self._token}"}

    # --- the dataset ---------------------------------------------------------------------

    def filters(self, week_ending: date, tier: Tier) -> list[dict[str, str]]:
        return [
            {"compareType": "equal", "fieldName": self.week_field, "fieldValue": week_ending.isoformat()},
            {"compareType": "equal", "fieldName": "tierIdentifier", "fieldValue": TIER_IDENTIFIERS[tier]},
        ]

    def describe(self, week_ending: date, tier: Tier) -> str:
        """Where a week came from, as stored in ``source_file`` of its raw rows."""
        return f"{self.url}?{self.week_field}={week_ending.isoformat()}&tierIdentifier={TIER_IDENTIFIERS[tier]}"

    def iter_weekly_summary(self, week_ending: date, tier: Tier) -> Iterator[dict[str, Any]]:
        """Yield the week's symbol × venue records for one tier, page by page.

        FINRA's dataset also holds per-symbol and per-firm aggregates (``summaryTypeCode`` not
        ending in ``_SMBL_FIRM``); the weekly file is the symbol × firm grain only, so aggregates
        are skipped here (and counted in the log) rather than double-counted downstream."""
        filters = self.filters(week_ending, tier)
        offset = 0
        skipped = 0
        while True:
            what = f"{DATASET_GROUP}/{DATASET_NAME} week {week_ending.isoformat()} tier {tier.value} (offset {offset})"
            body = {"limit": self.page_size, "offset": offset, "compareFilters": filters}
            response = self._request("POST", self.url, what, json=body, headers=self._auth_headers())
            page = self._page(response, what)
            for record in page:
                code = record.get("summaryTypeCode")
                if isinstance(code, str) and not code.endswith("_SMBL_FIRM"):
                    skipped += 1
                    continue
                yield record
            offset += len(page)
            total = response.headers.get("Record-Total", "").strip()
            # With Record-Total, page until it is reached (a server may cap pages below our limit);
            # without it, a short page is the last one. An empty page always ends the week.
            if not page or (offset >= int(total) if total.isdigit() else len(page) < self.page_size):
                break
        if skipped:
            log.info("FINRA API: skipped %d aggregate records (not symbol × firm)", skipped)

    def weekly_summary(self, week_ending: date, tier: Tier) -> list[dict[str, Any]]:
        return list(self.iter_weekly_summary(week_ending, tier))

    @staticmethod
    def _page(response: httpx.Response, what: str) -> list[dict[str, Any]]:
        if response.status_code == 204 or not response.content.strip():
            return []  # FINRA answers an empty body when a filter matches nothing
        try:
            body: Any = response.json()
        except ValueError as exc:
            kind = response.headers.get("Content-Type", "unknown content type")
            raise SourceUnavailable(f"FINRA API answered {what} with something other than JSON ({kind})") from exc
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise SourceUnavailable(f"FINRA API answered {what} with JSON that is not a list of records")
        return body
