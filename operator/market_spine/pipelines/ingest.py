"""``finra.otc_transparency.ingest_week``: one week of one tier, from a file, a URL or FINRA's API,
into the raw table as received (stage RAW).

Called through the registry by ``services.runs`` (``spine run``, the local worker, a pipeline Job).
Source, from ``ctx.params``: ``file`` (a path or an http(s) URL; ``url`` is accepted as a synonym)
or ``source=finra-api``. The capture is ``capture_id(tier, week, capture day)``; re-running the same
capture replaces its rows (replay), a later capture day adds a restatement beside it.

Raw rows keep every field as text exactly as received, plus where it came from (source, line
number, SHA-256 of the line) and which capture and execution wrote it. Nothing is judged here
beyond "is this file usable at all" (header, week, tier): row-level problems are normalize's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from hashlib import sha256

from market_spine.config import load_settings
from market_spine.core.partitions import capture_day, capture_id
from market_spine.core.stages import INGEST, Stage
from market_spine.db.schema import raw
from market_spine.errors import SourceUnavailable, UsageError
from market_spine.finra.api import FinraApiClient
from market_spine.finra.files import (
    FIELD_COUNT,
    WeeklyData,
    check_partition,
    read_weekly,
    split_fields,
    weekly_from_records,
)
from market_spine.pipelines.copy import copy_text, escape, needs_escape
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
    "week_ending",
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
    with FinraApiClient.from_settings(settings) as client:
        records = client.weekly_summary(ctx.week_ending, ctx.tier)
        source = client.describe(ctx.week_ending, ctx.tier)
    if not records:
        raise SourceUnavailable(
            f"FINRA API has no rows for week {ctx.week_ending.isoformat()} tier {ctx.tier.value} "
            f"({source}); the week may not be published yet"
        )
    return weekly_from_records(source, records)


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


def raw_copy_chunks(prefix: str, data: WeeklyData, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, str]]:
    """The week's raw rows in COPY text format, ``chunk_rows`` lines per chunk.

    ``prefix`` is the escaped constant columns followed by a tab. A well-formed line needs no
    splitting at all: its pipes become tabs. This is ingest's hot loop, so it is one comprehension
    per chunk: the line number, the SHA-256 of the line as received, and the line's fields."""
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
    check_partition(data, ctx.week_ending, ctx.tier)
    capture = capture_id(ctx.tier, ctx.week_ending, ctx.capture_date or capture_day(ctx.now))
    captured_at = captured_at_for(ctx)
    constants = (capture, captured_at.isoformat(), ctx.execution_id, ctx.week_ending.isoformat(), ctx.tier.value)
    prefix = "".join(f"{escape(value)}\t" for value in (*constants, data.source))
    with ctx.engine.begin() as conn:
        replace_capture(conn, ctx.week_ending, ctx.tier, capture, [(raw, {})])
        count = copy_text(conn, raw, RAW_COLUMNS, raw_copy_chunks(prefix, data), progress=ctx.progress)
        upsert_manifest(
            conn,
            stage=Stage.RAW,
            week_ending=ctx.week_ending,
            tier=ctx.tier,
            row_count=count,
            capture_id=capture,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.RAW, capture, count)
