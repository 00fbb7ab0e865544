"""FINRA weekly files: read one (a path or an http(s) URL), check its header, split it into rows.

Called by ``pipelines.ingest`` for ``--file``, and by the API client's callers through
:func:`weekly_from_records`, so a week from FINRA's API and a week from a file become the same
rows. FINRA's files are pipe-delimited despite the ``.csv`` name, with one header row, no quoting
and no pipe inside a field, so a plain ``str.split('|')`` is both correct and the fastest parser.

What this module refuses (:class:`InputFileError`, before anything is written): a missing or
empty file, a header that is not FINRA's, and a file that is for another week or tier as a
whole. What it lets through is row-level damage (a short row, a blank symbol, text in a number
column): those rows are stored raw and rejected with a reason by normalization, so one bad row
never aborts a week.

A weekly file says nothing about its trading week: its only date, ``lastUpdateDate``, is the day
FINRA published (or later corrected) each row. The week is what the user names, or what
:func:`infer_week` reads off FINRA's publication calendar; :func:`check_partition` refuses a file
published before the named week could have been.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NamedTuple

import httpx

from market_spine.core.calendar import PublicationCalendar, describe_week
from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.errors import InputFileError, SourceUnavailable

HEADER: tuple[str, ...] = (
    "tierDescription",
    "issueSymbolIdentifier",
    "issueName",
    "marketParticipantName",
    "MPID",
    "totalWeeklyShareQuantity",
    "totalWeeklyTradeCount",
    "lastUpdateDate",
)
HEADER_LINE = "|".join(HEADER)
FIELD_COUNT = len(HEADER)
# What FINRA's Query API adds to the file's columns for a row; kept in raw (NULL for file rows).
API_FIELDS: tuple[str, ...] = (
    "weekStartDate",
    "summaryTypeCode",
    "initialPublishedDate",
    "lastReportedDate",
    "tierIdentifier",
    "firmCRDNumber",
    "productTypeCode",
    "totalNotionalSum",
)

Fields = tuple[str | None, ...]


class SourceRow(NamedTuple):
    """One data row as received. ``fields`` always has :data:`FIELD_COUNT` entries: a short row
    has ``None`` for the fields it lacks, and a long row keeps its surplus in the last field, so
    nothing received is lost and normalization can say what was wrong."""

    line_number: int  # 1-based line in the file (the header is line 1); record number for the API
    text: str  # the record as received, without its line ending: what the record hash covers
    fields: Fields


@dataclass(frozen=True)
class WeeklyData:
    """A week's data lines as received, with their line numbers.

    Lines stay unsplit: ingest stores them as they are (one ``replace`` turns a line into a COPY
    row) and only :meth:`rows` splits them, for callers that want fields."""

    source: str  # the path (absolute) or URL the rows came from, stored with every raw row
    lines: list[str]  # data lines without line endings; blank lines are not data
    line_numbers: list[int]  # the 1-based line of each in the file (the header is line 1)
    # For rows from FINRA's API: each row's API_FIELDS values as text (None where absent).
    api_values: list[tuple[str | None, ...]] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def rows(self) -> list[SourceRow]:
        return [SourceRow(n, line, split_fields(line)) for n, line in zip(self.line_numbers, self.lines, strict=True)]


def split_fields(line: str) -> Fields:
    parts = line.split("|")
    if len(parts) == FIELD_COUNT:
        return tuple(parts)
    if len(parts) > FIELD_COUNT:
        return (*parts[: FIELD_COUNT - 1], "|".join(parts[FIELD_COUNT - 1 :]))
    return (*parts, *([None] * (FIELD_COUNT - len(parts))))


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Some older FINRA downloads are Windows-1252; latin-1 never fails and keeps every byte.
        return data.decode("latin-1")


def _fetch(source: str, timeout: float) -> bytes:
    try:
        response = httpx.get(source, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"{source}: could not download: {exc}") from exc
    if response.status_code >= 400:
        raise SourceUnavailable(f"{source}: download failed with HTTP {response.status_code}")
    return response.content


def read_bytes(source: str | Path, *, timeout: float = 60.0) -> tuple[str, bytes]:
    """Return (where it came from, the bytes) for a local path or an http(s) URL."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return text, _fetch(text, timeout)
    path = Path(source).expanduser()
    try:
        return str(path.resolve()), path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a FINRA weekly file") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_weekly_text(text: str, source: str) -> WeeklyData:
    """Check the header and keep the data lines with their 1-based line numbers.

    Blank lines (a trailing newline, an empty line at the end) are not records and are skipped;
    line numbers still count them, so a number always points at the line in the file. This is the
    hot path of an ingest: whole-list operations, no per-line function calls."""
    lines = text.split("\n")
    if "\r" in text:  # CRLF files; a carriage return inside a line stays data
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    header = lines[0]
    if not header.strip() and not any(line.strip() for line in lines):
        raise InputFileError(f"{source}: empty file (expected a header line: {HEADER_LINE})")
    if header != HEADER_LINE:
        got = header if len(header) <= 200 else header[:200] + "…"
        raise InputFileError(f"{source}: bad header: expected {HEADER_LINE!r}, got {got!r}")
    body = lines[1:]
    numbers = [number for number, line in enumerate(body, start=2) if line and not line.isspace()]
    if len(numbers) != len(body):
        body = [lines[number - 1] for number in numbers]
    if not body:
        raise InputFileError(f"{source}: no data rows after the header")
    return WeeklyData(source, body, numbers)


def iter_rows(text: str, source: str) -> Iterator[SourceRow]:
    """Check the header, then yield the data rows with their 1-based line numbers and fields."""
    yield from parse_weekly_text(text, source).rows()


def read_weekly(source: str | Path, *, timeout: float = 60.0) -> WeeklyData:
    """Read a FINRA weekly file; :class:`InputFileError` if it cannot be used at all."""
    where, data = read_bytes(source, timeout=timeout)
    return parse_weekly_text(_decode(data), where)


def _field_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON may carry 1234.0 for an integer column
    return str(value)


def weekly_from_records(source: str, records: Iterable[Mapping[str, object]]) -> WeeklyData:
    """FINRA API records (objects keyed by the file's column names) → a week, numbered from 1.

    Each record becomes the line the file would have for it, so a week's record hashes are the
    same whichever way it arrived; the API's other fields (:data:`API_FIELDS`) travel beside it.
    (FINRA fields never contain a pipe; if one did, the line would have too many fields and
    normalization would reject it with a reason.)"""
    records = list(records)
    lines = ["|".join(_field_text(record.get(name)) for name in HEADER) for record in records]
    values = [
        tuple(None if record.get(name) is None else _field_text(record.get(name)) for name in API_FIELDS)
        for record in records
    ]
    return WeeklyData(source, lines, list(range(1, len(lines) + 1)), values)


def _as_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value else None
    except ValueError:
        return None


def publication_dates(data: WeeklyData) -> Counter[date | None]:
    """How many rows carry each ``lastUpdateDate`` (``None``: missing or not a date). The last field
    of each line, without splitting the whole line: a week has one or two distinct values."""
    dates: Counter[date | None] = Counter()
    for text, count in Counter(line.rpartition("|")[2] for line in data.lines).items():
        dates[_as_date(text)] += count
    return dates


def publication_range(data: WeeklyData) -> tuple[date, date] | None:
    """(earliest, latest) ``lastUpdateDate`` of the rows, or ``None`` if no row has a readable one.
    A later latest than earliest means FINRA corrected some rows after first publishing them."""
    dated = [day for day in publication_dates(data) if day is not None]
    return (min(dated), max(dated)) if dated else None


def infer_week(data: WeeklyData, tier: Tier, calendar: PublicationCalendar) -> tuple[date, date]:
    """(trading week, publication day) for a file whose week was not named: the newest week FINRA
    had published for ``tier`` by the rows' earliest ``lastUpdateDate`` (the first publication;
    later dates are corrections)."""
    found = publication_range(data)
    if found is None:
        raise InputFileError(f"{data.source}: no row has a readable lastUpdateDate; name the week with --week")
    earliest = found[0]
    return calendar.newest_published_week(tier, earliest), earliest


def check_partition(data: WeeklyData, week: date, tier: Tier, calendar: PublicationCalendar) -> list[str]:
    """Refuse a file that is, as a whole, for another week or another tier; return notes worth
    telling the user about a file that is accepted.

    The week: a row cannot describe a week FINRA had not published yet, so a file none of whose
    rows was published (``lastUpdateDate``) on or after the week's first publication is another
    week's, and the error names the week its date fits. Rows from FINRA's API also carry
    ``weekStartDate``: then at least one row must be for the week. If some rows are for the
    partition, the file is its own and odd rows are rejected one by one during normalization; if
    none is, the user picked the wrong file, and mixing it in would be worse than stopping."""
    published = calendar.first_publication(week, tier)
    dates = publication_dates(data)
    dated = sorted(day for day in dates if day is not None)
    if not dated:
        raise InputFileError(f"{data.source}: no row has a readable lastUpdateDate (FINRA's publication day)")
    if dated[-1] < published:
        day = max(dated, key=lambda d: (dates[d], d))  # the day most rows were published
        fits = calendar.newest_published_week(tier, day)
        raise InputFileError(
            f"{data.source}: its rows were published on {day.isoformat()} (lastUpdateDate), before FINRA's first "
            f"publication of {tier.value} week {week.isoformat()} on {published.isoformat()}; "
            f"{day.isoformat()} fits week {describe_week(fits)}: use --week {fits.isoformat()}"
        )
    if data.api_values is not None:
        starts = Counter(values[0] for values in data.api_values)
        if starts and not starts[week.isoformat()]:
            found = max(starts.items(), key=lambda item: (item[1], item[0] or ""))[0]
            raise InputFileError(
                f"{data.source}: the rows are for week {found or 'unknown'} (weekStartDate), not {week.isoformat()}"
            )
    _check_tier(data, tier)
    notes = []
    if dated[0] > published:
        fits = calendar.newest_published_week(tier, dated[0])
        if fits != week:
            notes.append(
                f"every row of {data.source} was last updated after week {week.isoformat()}'s first publication "
                f"({published.isoformat()}), on {dated[0].isoformat()} or later, which is when FINRA first published "
                f"week {fits.isoformat()}: ingested as a correction of week {week.isoformat()}; if the file is "
                f"week {fits.isoformat()}, run again with --week {fits.isoformat()}"
            )
    return notes


def _check_tier(data: WeeklyData, tier: Tier) -> None:
    tiers: Counter[Tier | None] = Counter()
    for text, count in Counter(line.partition("|")[0] for line in data.lines).items():
        try:
            tiers[parse_tier(text)] += count
        except UnknownTier:
            tiers[None] += count
    if tiers[tier] == 0:
        known = [(count, t.value) for t, count in tiers.items() if t is not None]
        found = max(known)[1] if known else "no recognised tierDescription"
        raise InputFileError(f"{data.source}: the file is for tier {found}, not the requested tier {tier.value}")
