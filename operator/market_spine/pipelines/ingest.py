"""``finra.otc_transparency.ingest_week``: one week of one tier, from a file, a URL or FINRA's API,
into the raw table as received (stage RAW).

Called through the registry by ``services.runs`` (``spine run``, the local worker, a pipeline Job).
Source, from ``ctx.params``: ``file`` (a path or an http(s) URL; ``url`` is accepted as a synonym)
or ``source=finra-api``. The capture is ``capture_id(tier, week, capture day)``; re-running the same
capture replaces its rows (replay), a later capture day adds a restatement beside it (a FINRA
correction of the week arrives that way). The capture day is today (UTC) or ``--capture-date``,
which re-creates an earlier day's capture and can never be a day still to come.

The source is streamed: a block of lines is read, formatted and sent to PostgreSQL's COPY while
the next is read, so memory stays flat however large the file (or however endless: a download
stops at its deadline). Raw rows keep every field as text exactly as received, FINRA's API fields
included (NULL for a file, which lacks them), plus where it came from (source, line number,
SHA-256 of the line) and which capture and execution wrote it; a line that could not be stored as
received carries its ``defect`` (normalize rejects it). The capture's row in the captures table
records its source, row count and the range of FINRA publication dates (``lastUpdateDate``) its
rows carry. Nothing is judged here beyond "is this file usable at all" (header, week, tier),
checked once the whole file has streamed by: a refusal rolls the stage back and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from hashlib import sha256
from itertools import count

from market_spine.config import Settings, load_settings
from market_spine.core.partitions import capture_day, capture_id
from market_spine.core.stages import INGEST, Stage
from market_spine.db.schema import FINRA_API_COLUMNS, captures, raw
from market_spine.errors import UsageError
from market_spine.finra.api import FinraApiClient
from market_spine.finra.files import API_FIELDS, FIELD_COUNT, ApiWeek, Batch, WeekInput, open_weekly, split_fields
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.copy import copy_rows, copy_text, escape, needs_escape
from market_spine.pipelines.manifest import replace_capture, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

SOURCE_API = "finra-api"
PIPES = FIELD_COUNT - 1
SOURCE_FILE = "file"
NULL = "\\N"

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
    "defect",
)
CAPTURE_COLUMNS: tuple[str, ...] = tuple(column.name for column in captures.columns)
# One raw column per API field, in API_FIELDS' order.
assert len(FINRA_API_COLUMNS) == len(API_FIELDS)


def capture_date_of(ctx: RunContext) -> date:
    """The capture day: ``--capture-date`` (``ctx.capture_date``, or the ``capture_date`` param of a
    work item), else today (UTC). A day after today is refused: it would make this capture the
    partition's "latest" and hide every real capture taken until then."""
    today = capture_day(ctx.now)
    day = ctx.capture_date
    text = ctx.params.get("capture_date")
    if day is None and text:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise UsageError(f"capture_date must be a date as YYYY-MM-DD, not {text!r}") from None
    if day is None:
        return today
    if day > today:
        raise UsageError(
            f"--capture-date {day.isoformat()} is in the future (today is {today.isoformat()}, UTC): a capture is "
            "dated the day it was taken, or an earlier day it re-creates"
        )
    return day


def captured_at_for(ctx: RunContext, day: date) -> datetime:
    """When the capture was taken: now, unless the run re-creates a capture of another day, which
    is then stamped at that day's midnight UTC so that captures of different days order by day in
    the latest views."""
    if day == capture_day(ctx.now):
        return ctx.now.astimezone(UTC)
    return datetime.combine(day, time(0), tzinfo=UTC)


@contextmanager
def open_source(ctx: RunContext, settings: Settings) -> Iterator[WeekInput]:
    """The week named by ``ctx.params``, ready to stream; a usage error if no single source is named."""
    file = ctx.params.get("file") or ctx.params.get("url")
    source = ctx.params.get("source")
    if source not in (None, "", SOURCE_API, SOURCE_FILE):
        raise UsageError(f"unknown source {source!r}; use --source {SOURCE_API} or --file PATH|URL")
    if source == SOURCE_API:
        if file:
            raise UsageError(f"give either --file or --source {SOURCE_API}, not both")
        if ctx.params.get("api_url"):  # a per-run mirror, e.g. from a work item's params
            settings = settings.model_copy(update={"finra_api_url": ctx.params["api_url"]})
        # "Today", for which dataset holds the week and whether it is published yet, is the run's day.
        with FinraApiClient.from_settings(settings, today=lambda: capture_day(ctx.now)) as client:
            fetched = client.open_week(ctx.week, ctx.tier)  # rows, or one line saying why there are none
            yield ApiWeek(fetched.source, fetched.records)
        return
    if not file:
        raise UsageError(f"ingest needs a source: --file PATH|URL or --source {SOURCE_API}")
    with open_weekly(
        file, read_timeout=settings.download_timeout_seconds, deadline=settings.download_deadline_seconds
    ) as week:
        yield week


def _slow_line(prefix: str, number: int, line: str, defect: str | None = None, digest: str | None = None) -> str:
    # A short or long row, a value that needs escaping, or a damaged line: split, pad with NULL
    # (\N), escape.
    hashed = digest or sha256(line.encode()).hexdigest()
    values = [NULL if value is None else escape(value) for value in split_fields(line)]
    fields = "\t".join(values)
    return f"{prefix}{number}\t{hashed}\t{fields}\t{NULL if defect is None else escape(defect)}\n"


def _api_suffix(values: tuple[str | None, ...]) -> str:
    """The API fields of one row as COPY text, each after a tab (NULL as ``\\N``)."""
    return "".join(f"\t{NULL}" if value is None else f"\t{escape(value)}" for value in values)


def _careful(prefix: str, batch: Batch) -> str:
    """A batch with damaged lines, API records or values to escape, line by line."""
    defects = batch.defects or {}
    out = []
    for offset, line in enumerate(batch.lines):
        if not line or line.isspace():
            continue
        defect = defects.get(offset)
        text = _slow_line(prefix, batch.first + offset, line, *(defect or (None, None)))
        if batch.api_values is not None:
            text = f"{text[:-1]}{_api_suffix(batch.api_values[offset])}\n"
        out.append(text)
    return "".join(out)


def raw_copy_chunks(prefix: str, week: WeekInput) -> Iterator[tuple[int, str]]:
    """The week's raw rows in COPY text format, one chunk per batch of lines read.

    ``prefix`` is the escaped constant columns followed by a tab. A well-formed line needs no
    splitting at all: its pipes become tabs. This is ingest's hot loop, so it is one comprehension
    per batch: the line number, the SHA-256 of the line as received, the line's fields, and no
    defect. Batches with anything unusual take :func:`_careful`."""
    sha = sha256
    tab = "\t"
    for batch in week.batches():
        lines = batch.lines
        if batch.defects is None and batch.api_values is None and not needs_escape("\n".join(lines)):
            rows = [
                f"{prefix}{number}\t{sha(line.encode()).hexdigest()}\t{line.replace('|', tab)}\t\\N\n"
                if line.count("|") == PIPES
                else _slow_line(prefix, number, line)
                for number, line in zip(count(batch.first), lines, strict=False)
                if line and not line.isspace()
            ]
            yield len(rows), "".join(rows)
        else:
            text = _careful(prefix, batch)
            yield text.count("\n"), text


@register(INGEST, Stage.RAW, "Ingest one FINRA weekly file (path, URL or FINRA's API) into raw rows")
def ingest_week(ctx: RunContext) -> StageResult:
    day = capture_date_of(ctx)
    capture = capture_id(ctx.tier, ctx.week, day)
    captured_at = captured_at_for(ctx, day)
    constants = (capture, captured_at.isoformat(), ctx.execution_id, ctx.week.isoformat(), ctx.tier.value)
    with open_source(ctx, load_settings()) as week, ctx.engine.begin() as conn:
        prefix = "".join(f"{escape(value)}\t" for value in (*constants, week.source))
        columns = RAW_COLUMNS if not isinstance(week, ApiWeek) else (*RAW_COLUMNS, *FINRA_API_COLUMNS)
        replace_capture(conn, ctx.week, ctx.tier, capture, [(raw, {}), (captures, {})])
        rows = copy_text(conn, raw, columns, raw_copy_chunks(prefix, week), progress=ctx.progress)
        # The whole file has been read: refuse it now if it is another week's or tier's (the COPY
        # rolls back with the transaction).
        notes = week.stats.check(ctx.week, ctx.tier, finra_calendar())
        published = week.stats.publication_range()
        copy_rows(conn, captures, CAPTURE_COLUMNS, [(*constants, week.source, rows, *(published or (None, None)))])
        upsert_manifest(
            conn,
            stage=Stage.RAW,
            week=ctx.week,
            tier=ctx.tier,
            row_count=rows,
            capture_id=capture,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.RAW, capture, rows, notes=tuple(notes))
