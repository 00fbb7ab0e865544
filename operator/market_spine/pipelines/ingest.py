"""``finra.otc_transparency.ingest_week``: one week of one tier, from a file, a URL or FINRA's API,
into the raw table as received (stage RAW).

Called through the registry by ``services.runs`` (``spine run``, the local worker, a pipeline Job).
Source, from ``ctx.params``: ``file`` (a path or an http(s) URL; ``url`` is accepted as a synonym)
or ``source=finra-api``. The capture is ``capture_id(tier, week, capture day)``; re-running the same
capture replaces its rows (replay), a later capture day adds a restatement beside it (a FINRA
correction of the week arrives that way).

Raw rows keep every field as text exactly as received, FINRA's API fields included (NULL for a
file, which lacks them), plus where it came from (source, line number, SHA-256 of the line) and
which capture and execution wrote it. The capture's row in the captures table records its source,
row count and the range of FINRA publication dates (``lastUpdateDate``) its rows carry. Nothing is
judged here beyond "is this file usable at all" (header, week, tier): row-level problems are
normalize's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from hashlib import sha256

from market_spine.config import load_settings
from market_spine.core.partitions import capture_day, capture_id
from market_spine.core.stages import INGEST, Stage
from market_spine.db.schema import FINRA_API_COLUMNS, captures, raw
from market_spine.errors import UsageError
from market_spine.finra.api import FinraApiClient
from market_spine.finra.files import (
    API_FIELDS,
    FIELD_COUNT,
    WeeklyData,
    check_partition,
    publication_range,
    read_weekly,
    split_fields,
    weekly_from_records,
)
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.copy import copy_rows, copy_text, escape, needs_escape
from market_spine.pipelines.manifest import replace_capture, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

SOURCE_API = "finra-api"
# Rows per COPY chunk (~90 kB): big enough that per-chunk overhead vanishes, small enough to fit
# the socket's buffer, so PostgreSQL stores one chunk while the next is formatted.
CHUNK_ROWS = 250
PIPES = FIELD_COUNT - 1
SOURCE_FILE = "file"

RAW_COLUMNS: tuple[str, ...] = (
    "capture_id",
    "captured_at",
    "execution_id",
    "week",
    "tier",
    "source_file",
    "line_number",
    "record_hash",
    "tier_description",
    "issue_symbol_identifier",
    "issue_name",
    "market_participant_name",
    "mpid",
    "total_weekly_share_quantity",
    "total_weekly_trade_count",
    "last_update_date",
)
CAPTURE_COLUMNS: tuple[str, ...] = tuple(column.name for column in captures.columns)
# One raw column per API field, in API_FIELDS' order.
assert len(FINRA_API_COLUMNS) == len(API_FIELDS)


def captured_at_for(ctx: RunContext) -> datetime:
    """When the capture was taken: now, unless the run re-creates a capture of another day
    (``--capture-date``), which is then stamped at that day's midnight UTC so that captures of
    different days order by day in the latest views."""
    today = capture_day(ctx.now)
    if ctx.capture_date is None or ctx.capture_date == today:
        return ctx.now.astimezone(UTC)
    return datetime.combine(ctx.capture_date, time(0), tzinfo=UTC)


def _from_api(ctx: RunContext) -> WeeklyData:
    settings = load_settings()
    if ctx.params.get("api_url"):  # a per-run mirror, e.g. from a work item's params
        settings = settings.model_copy(update={"finra_api_url": ctx.params["api_url"]})
    # "Today", for which dataset holds the week and whether it is published yet, is the run's day.
    with FinraApiClient.from_settings(settings, today=lambda: capture_day(ctx.now)) as client:
        week = client.fetch_week(ctx.week, ctx.tier)  # rows, or one line saying why there are none
    return weekly_from_records(week.source, week.records)


def load_source(ctx: RunContext) -> WeeklyData:
    """Read the week named by ``ctx.params``; a usage error if no single source is named."""
    file = ctx.params.get("file") or ctx.params.get("url")
    source = ctx.params.get("source")
    if source not in (None, "", SOURCE_API, SOURCE_FILE):
        raise UsageError(f"unknown source {source!r}; use --source {SOURCE_API} or --file PATH|URL")
    if source == SOURCE_API:
        if file:
            raise UsageError(f"give either --file or --source {SOURCE_API}, not both")
        return _from_api(ctx)
    if file:
        return read_weekly(file)
    raise UsageError(f"ingest needs a source: --file PATH|URL or --source {SOURCE_API}")


def _slow_line(prefix: str, number: int, line: str) -> str:
    # A short or long row, or a value that needs escaping: split, pad with NULL (\N), escape.
    hashed = sha256(line.encode()).hexdigest()
    values = ["\\N" if value is None else escape(value) for value in split_fields(line)]
    fields = "\t".join(values)
    return f"{prefix}{number}\t{hashed}\t{fields}\n"


def _api_suffix(values: tuple[str | None, ...]) -> str:
    """The API fields of one row as COPY text, each after a tab (NULL as ``\\N``)."""
    return "".join("\t\\N" if value is None else f"\t{escape(value)}" for value in values)


def raw_copy_chunks(prefix: str, data: WeeklyData, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, str]]:
    """The week's raw rows in COPY text format, ``chunk_rows`` lines per chunk.

    ``prefix`` is the escaped constant columns followed by a tab. A well-formed line needs no
    splitting at all: its pipes become tabs. This is ingest's hot loop, so it is one comprehension
    per chunk: the line number, the SHA-256 of the line as received, and the line's fields. A week
    from the API adds its other fields (:data:`FINRA_API_COLUMNS`) at the end of each row."""
    if data.api_values is not None:
        rows = [
            f"{_slow_line(prefix, number, line)[:-1]}{_api_suffix(values)}\n"
            for number, line, values in zip(data.line_numbers, data.lines, data.api_values, strict=True)
        ]
        for start in range(0, len(rows), chunk_rows):
            chunk = rows[start : start + chunk_rows]
            yield len(chunk), "".join(chunk)
        return
    sha = sha256
    tab = "\t"
    fast = not needs_escape("\n".join(data.lines))
    for start in range(0, len(data.lines), chunk_rows):
        lines = data.lines[start : start + chunk_rows]
        numbers = data.line_numbers[start : start + chunk_rows]
        text = "".join(
            [
                f"{prefix}{number}\t{sha(line.encode()).hexdigest()}\t{line.replace('|', tab)}\n"
                if fast and line.count("|") == PIPES
                else _slow_line(prefix, number, line)
                for number, line in zip(numbers, lines, strict=True)
            ]
        )
        yield len(lines), text


@register(INGEST, Stage.RAW, "Ingest one FINRA weekly file (path, URL or FINRA's API) into raw rows")
def ingest_week(ctx: RunContext) -> StageResult:
    data = load_source(ctx)
    notes = check_partition(data, ctx.week, ctx.tier, finra_calendar())
    capture = capture_id(ctx.tier, ctx.week, ctx.capture_date or capture_day(ctx.now))
    captured_at = captured_at_for(ctx)
    constants = (capture, captured_at.isoformat(), ctx.execution_id, ctx.week.isoformat(), ctx.tier.value)
    prefix = "".join(f"{escape(value)}\t" for value in (*constants, data.source))
    columns = RAW_COLUMNS if data.api_values is None else (*RAW_COLUMNS, *FINRA_API_COLUMNS)
    published = publication_range(data)
    with ctx.engine.begin() as conn:
        replace_capture(conn, ctx.week, ctx.tier, capture, [(raw, {}), (captures, {})])
        count = copy_text(conn, raw, columns, raw_copy_chunks(prefix, data), progress=ctx.progress)
        copy_rows(
            conn,
            captures,
            CAPTURE_COLUMNS,
            [(*constants, data.source, count, *(published or (None, None)))],
        )
        upsert_manifest(
            conn,
            stage=Stage.RAW,
            week=ctx.week,
            tier=ctx.tier,
            row_count=count,
            capture_id=capture,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.RAW, capture, count, notes=tuple(notes))
