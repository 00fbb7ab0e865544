"""``spine run``: run one pipeline stage (and, with ``--chain``, the stages after it) now."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from market_spine.cli import context
from market_spine.cli.output import say
from market_spine.errors import UsageError
from market_spine.services.runs import run_recorded

SOURCES = ("finra-api",)


@contextmanager
def row_progress(label: str) -> Iterator[Callable[[int], None] | None]:
    """A live row counter on a terminal; nothing when output is piped."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed:,} rows"), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda rows: bar.update(task, completed=rows)


def absolute_source(file: str) -> str:
    """A ``--file`` as stored in params: a URL as given, a path made absolute against the current
    folder (a worker or Job started elsewhere reads the same file, not whatever its own folder has)."""
    if file.startswith(("http://", "https://")):
        return file
    return os.path.abspath(os.path.expanduser(file))


def source_params(file: str | None, source: str | None, capture_id: str | None = None) -> dict[str, str]:
    """The source params of ``spine run`` and ``spine work enqueue|backfill``."""
    if file and source:
        raise UsageError("give either --file or --source, not both")
    if source and source not in SOURCES:
        raise UsageError(f"unknown --source {source!r}; expected one of {', '.join(SOURCES)}")
    params: dict[str, str] = {}
    if file:
        params["file"] = absolute_source(file)
    if source:
        params["source"] = source
    if capture_id:
        params["capture_id"] = capture_id
    return params


def run(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name, e.g. finra.otc_transparency.ingest_week.")],
    tier: context.TierOpt,
    week: context.WeekOpt = None,
    week_ending: context.WeekEndingOpt = None,
    file: Annotated[str | None, typer.Option("--file", help="Path or http(s) URL of the weekly file (ingest).")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Remote source for ingest: finra-api.")] = None,
    capture_date: Annotated[
        str | None, typer.Option("--capture-date", help="Capture day (YYYY-MM-DD, UTC); default today.")
    ] = None,
    capture_id: Annotated[
        str | None, typer.Option("--capture-id", help="Capture to read (normalize/compute); default latest.")
    ] = None,
    execution_id: Annotated[
        str | None,
        typer.Option("--execution-id", help="Execution id given by the operator to a Job's attempt."),
    ] = None,
    chain: Annotated[bool, typer.Option("--chain", help="Also run the stages after this one.")] = False,
) -> None:
    """Run a pipeline stage for one partition (trading week × tier), now, in this process.

    An ingest of a --file may leave the week out: it is then read off FINRA's publication calendar."""
    context.check_pipeline(pipeline)
    partition = context.ingest_partition(pipeline, week, week_ending, tier, file)
    params = source_params(file, source, capture_id)
    day = context.parse_date(capture_date, "--capture-date") if capture_date else None
    with row_progress(pipeline.rsplit(".", 1)[-1]) as progress:
        runs = run_recorded(
            context.engine(),
            pipeline,
            partition.week,
            partition.tier,
            params=params,
            clock=context.utcnow,
            execution_id=execution_id,
            capture_date=day,
            chain=chain,
            backend="kubernetes" if execution_id else "cli",
            progress=progress,
        )
    for stage in runs:
        for note in stage.result.notes:
            say(f"note: {note}")
        rejected = f", {stage.result.rejected} rejected" if stage.result.rejected else ""
        print(
            f"{stage.pipeline}: {stage.result.stage.value} {stage.result.row_count} rows{rejected} "
            f"(capture {stage.result.capture_id})"
        )
    if not runs:
        say("nothing ran")
