"""FINRA Query API client for the ``otcMarket`` weekly summaries (``--source finra-api``).

Called by ``pipelines.ingest``; tested against a local HTTP server that answers in FINRA's shape
(``tests/support/finra_api.py``). One week of one tier is
``POST {base}/data/group/otcMarket/name/weeklySummary`` with a JSON body::

    {"limit": 5000, "offset": 0, "fields": [...],
     "compareFilters": [{"compareType": "EQUAL", "fieldName": "weekStartDate", "fieldValue": "2025-11-10"},
                        {"compareType": "EQUAL", "fieldName": "tierIdentifier", "fieldValue": "OTCE"},
                        {"compareType": "EQUAL", "fieldName": "summaryTypeCode", "fieldValue": "ATS_W_SMBL_FIRM"}]}

``weekStartDate`` is the trading week (``lastUpdateDate`` is the day FINRA published or corrected a
row, so filtering on it would move a corrected row out of its week); ``tierIdentifier`` is FINRA's
``T1``/``T2``/``OTCE``; ``ATS_W_SMBL_FIRM`` keeps the ATS venue rows only, never the non-ATS firms'
or the per-symbol and per-firm totals. ``weeklySummary`` keeps a rolling 12 months; older weeks come
from ``weeklySummaryHistoric``, which filters only on ``weekStartDate`` and ``tierIdentifier``, so
there the row kind is filtered here. This client also:

- pages by ``offset`` until ``Record-Total`` rows (or, without it, a short page; 204 = no rows);
- limits its own request rate (a token bucket), because FINRA throttles with 429 anyway and a
  backfill should not spend its retries on self-inflicted throttling;
- retries 429, 5xx and connection failures with exponential backoff, honouring ``Retry-After``,
  and after ``retries`` attempts raises :class:`SourceUnavailable` saying what FINRA answered;
- says why a week has no rows, each in one line: not published yet (retryable, with the day
  FINRA's calendar expects it), outside FINRA's data window (permanent), published but empty;
  and turns a refused request into "FINRA refused the request (FINRA's own message)";
- optionally authenticates with OAuth client credentials (FINRA's public datasets need none);
- bounds what a server can make it hold or wait for: a page larger than :data:`MAX_PAGE_BYTES`
  (FINRA's are at most 3 MB) is refused, and with a ``deadline`` (``SPINE_DOWNLOAD_DEADLINE_SECONDS``
  from the settings) the whole fetch, retries included, stops once it has passed, however slowly
  the answers trickle in (:mod:`market_spine.finra.download`). :meth:`FinraApiClient.open_week`
  hands a week's records on page by page, so ingest never holds the whole week.

The base URL comes from ``SPINE_FINRA_API_URL`` so that a proxy or a mirror can stand in for FINRA.
``sleep``, ``clock`` and ``today`` are injectable so tests exercise backoff, rate limits and the
data window without waiting.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from market_spine.config import Settings
from market_spine.core.calendar import PublicationCalendar
from market_spine.core.partitions import FINRA_TIER_IDS, Tier
from market_spine.errors import NotPublishedYet, OutsideDataWindow, SourceUnavailable, UsageError
from market_spine.finra.download import Watchdog
from market_spine.finra.files import API_FIELDS, HEADER
from market_spine.finra.schedule import finra_calendar

log = logging.getLogger(__name__)

DATASET_GROUP = "otcMarket"
CURRENT_DATASET = "weeklySummary"  # a rolling 12 months
HISTORIC_DATASET = "weeklySummaryHistoric"  # the years before, filtered on week and tier only
ATS_VENUE_ROWS = "ATS_W_SMBL_FIRM"  # one ATS (MPID), one symbol: the grain of venue analytics
# Fields asked for (FINRA's ``fields`` projection): the weekly file's columns and the API's own.
FIELDS: tuple[str, ...] = (*HEADER, *(name for name in API_FIELDS if name not in HEADER))
CURRENT_WINDOW = timedelta(days=365)
# FINRA keeps about four years in the historic dataset, before the current year.
DATA_WINDOW = timedelta(days=5 * 365 + 1)
# Near the 12-month boundary FINRA's own cut-over day is not known exactly: an empty answer there
# is asked of the other dataset too.
BOUNDARY_SLACK = timedelta(days=28)
DEFAULT_BASE_URL = "https://api.finra.org"
# FINRA's identity platform issues Query API tokens; a mirror that needs none leaves the client id unset.
DEFAULT_TOKEN_URL = "https://ews.fip.finra.org/fip/rest/ews/oauth2/access_token?grant_type=client_credentials"
MAX_PAGE_SIZE = 5000  # FINRA's largest synchronous page
# FINRA caps a page at 3 MB; an answer far beyond that is not FINRA's, and is not held in memory.
MAX_PAGE_BYTES = 64 * 1024 * 1024

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Today = Callable[[], date]


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class FetchedWeek:
    """One week of one tier as FINRA's API answered it: the ATS venue records, and where they came
    from (stored as ``source_file`` of the raw rows)."""

    dataset: str
    source: str
    records: Iterable[dict[str, Any]]  # a list from fetch_week, page by page from open_week


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
        calendar: PublicationCalendar | None = None,
        today: Today = utc_today,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str = DEFAULT_TOKEN_URL,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        deadline: float | None = None,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        if retries < 1:
            raise ValueError("retries must be at least 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1…{MAX_PAGE_SIZE}")
        self.base_url = base_url.rstrip("/")
        self.url = self.dataset_url(CURRENT_DATASET)
        self.retries = retries
        self.page_size = page_size
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self.calendar = calendar or finra_calendar()
        self._today = today
        self._credentials = (client_id, client_secret) if client_id and client_secret else None
        self._token_url = token_url
        self._token: str | None = None
        self._token_expires = 0.0
        self._sleep = sleep
        self._clock = clock
        self._bucket = TokenBucket(rate_per_second, clock=clock, sleep=sleep)
        self.deadline = deadline
        self.max_page_bytes = max_page_bytes
        self._watchdog: Watchdog | None = None  # started by the first request when there is a deadline
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
            "timeout": settings.download_timeout_seconds,
            "deadline": settings.download_deadline_seconds,
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
        if self._watchdog is not None:
            self._watchdog.__exit__(None, None, None)
        self._http.close()

    # --- requests ------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds))

    def _check_deadline(self, what: str, wait: float = 0.0) -> None:
        """:class:`SourceUnavailable` if the fetch's deadline has passed (or would, after ``wait``)."""
        watchdog = self._watchdog
        if watchdog is not None and (watchdog.expired or watchdog.remaining() < wait):
            raise SourceUnavailable(
                f"FINRA API: {what} did not finish within the deadline of {watchdog.seconds:g} s "
                "(SPINE_DOWNLOAD_DEADLINE_SECONDS)"
            )

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request; the body is read as it arrives, up to :attr:`max_page_bytes`."""
        if self.deadline is not None and self._watchdog is None:
            self._watchdog = Watchdog(self.deadline).__enter__()
        auth = kwargs.pop("auth", None)
        extensions = {"trace": self._watchdog.trace} if self._watchdog is not None else {}
        request = self._http.build_request(method, url, extensions=extensions, **kwargs)
        response = self._http.send(request, auth=auth, stream=True)
        try:
            body = bytearray()
            for block in response.iter_bytes():
                body += block
                if len(body) > self.max_page_bytes:
                    raise SourceUnavailable(
                        f"FINRA API answered {what} with more than {self.max_page_bytes:,} bytes "
                        "(FINRA's pages are at most 3 MB): not FINRA's answer"
                    )
        finally:
            response.close()
        self._check_deadline(what)  # a shut-down connection can look like a short answer
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body), request=request)

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """Send with rate limiting and retries; return a 2xx response or raise a one-line error."""
        answers: list[str] = []
        last_error = ""
        for attempt in range(1, self.retries + 1):
            self._check_deadline(what)
            self._bucket.acquire()
            delay = self._backoff(attempt)
            try:
                response = self._send(method, url, what, **kwargs)
            except httpx.TransportError as exc:
                self._check_deadline(what)
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
                        raise UsageError(f"FINRA refused the request ({message}): HTTP {status} for {what} at {url}")
                    raise SourceUnavailable(f"FINRA refused the request ({message}): HTTP {status} for {what}")
            if attempt < self.retries:
                self._check_deadline(what, wait=delay)
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

    # --- the datasets --------------------------------------------------------------------

    def dataset_url(self, dataset: str) -> str:
        return f"{self.base_url}/data/group/{DATASET_GROUP}/name/{dataset}"

    def dataset_for(self, week: date) -> str:
        """``weeklySummary`` for weeks in FINRA's rolling 12 months, ``weeklySummaryHistoric`` before."""
        return HISTORIC_DATASET if week < self._today() - CURRENT_WINDOW else CURRENT_DATASET

    @staticmethod
    def filters(week: date, tier: Tier, dataset: str = CURRENT_DATASET) -> list[dict[str, str]]:
        """The ``compareFilters`` of a week's request. The historic dataset refuses a filter on
        ``summaryTypeCode``: there, the row kind is filtered on the records received."""
        filters = [
            {"compareType": "EQUAL", "fieldName": "weekStartDate", "fieldValue": week.isoformat()},
            {"compareType": "EQUAL", "fieldName": "tierIdentifier", "fieldValue": FINRA_TIER_IDS[tier]},
        ]
        if dataset == CURRENT_DATASET:
            filters.append({"compareType": "EQUAL", "fieldName": "summaryTypeCode", "fieldValue": ATS_VENUE_ROWS})
        return filters

    def describe(self, week: date, tier: Tier, dataset: str = CURRENT_DATASET) -> str:
        """Where a week came from, as stored in ``source_file`` of its raw rows."""
        query = "&".join(f"{f['fieldName']}={f['fieldValue']}" for f in self.filters(week, tier, dataset))
        if dataset != CURRENT_DATASET:
            query += f"&summaryTypeCode={ATS_VENUE_ROWS}"  # filtered here, not by FINRA
        return f"{self.dataset_url(dataset)}?{query}"

    def iter_weekly_summary(self, week: date, tier: Tier, dataset: str = CURRENT_DATASET) -> Iterator[dict[str, Any]]:
        """Yield the week's ATS venue records (``ATS_W_SMBL_FIRM``) for one tier, page by page.

        Records of any other kind are skipped (and counted in the log): FINRA filters them out of
        ``weeklySummary`` already, and ``weeklySummaryHistoric`` cannot, so they would otherwise
        mix non-ATS firms and per-symbol totals into the venue shares."""
        url = self.dataset_url(dataset)
        filters = self.filters(week, tier, dataset)
        offset = 0
        skipped = 0
        while True:
            what = f"{DATASET_GROUP}/{dataset} week {week.isoformat()} tier {tier.value} (offset {offset})"
            body = {"limit": self.page_size, "offset": offset, "fields": list(FIELDS), "compareFilters": filters}
            response = self._request("POST", url, what, json=body, headers=self._auth_headers())
            page = self._page(response, what)
            for record in page:
                if record.get("summaryTypeCode") != ATS_VENUE_ROWS:
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
            log.info("FINRA API: skipped %d records that are not ATS venue rows (%s)", skipped, ATS_VENUE_ROWS)

    def fetch_week(self, week: date, tier: Tier) -> FetchedWeek:
        """:meth:`open_week` with every record read into a list."""
        found = self.open_week(week, tier)
        return replace(found, records=list(found.records))

    def open_week(self, week: date, tier: Tier) -> FetchedWeek:
        """The week's ATS venue records, from whichever dataset holds the week, as an iterator that
        asks for each next page when it needs it; one clear error when there are none: not
        published yet, outside FINRA's data window, or published but empty."""
        today = self._today()
        primary = self.dataset_for(week)
        datasets = [primary]
        if abs(week - (today - CURRENT_WINDOW)) <= BOUNDARY_SLACK:
            datasets.append(HISTORIC_DATASET if primary == CURRENT_DATASET else CURRENT_DATASET)
        for dataset in datasets:
            records = self.iter_weekly_summary(week, tier, dataset)
            first = next(records, None)  # the first page says whether this dataset has the week
            if first is not None:
                return FetchedWeek(dataset, self.describe(week, tier, dataset), itertools.chain([first], records))
        label = f"{tier.value} week {week.isoformat()} ({FINRA_TIER_IDS[tier]})"
        published = self.calendar.first_publication(week, tier)
        if today < published:
            raise NotPublishedYet(f"FINRA API: {label} is not published yet (expected on {published.isoformat()})")
        if week < today - DATA_WINDOW:
            raise OutsideDataWindow(
                f"FINRA API: {label} is outside FINRA's data window (weeklySummary keeps 12 months, "
                f"{HISTORIC_DATASET} about 4 years before that): no rows"
            )
        raise SourceUnavailable(
            f"FINRA API: {label} is published but empty (first published on {published.isoformat()}): "
            f"no {ATS_VENUE_ROWS} rows in {' or '.join(datasets)}"
        )

    def weekly_summary(self, week: date, tier: Tier) -> list[dict[str, Any]]:
        """The week's ATS venue records from the dataset that holds it (empty if there are none)."""
        return list(self.iter_weekly_summary(week, tier, self.dataset_for(week)))

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
