"""``spine work …`` and ``spine worker``: the work queue, on either backend.

``SPINE_BACKEND=local`` (default) uses ``services.queue.LocalQueue`` on PostgreSQL;
``SPINE_BACKEND=kubernetes`` uses ``kube.workitems.KubernetesQueue`` on SpineWorkItems. Both take
the same specs and return the same results, so the flags and output here are the same too. What a
verb may do to an item is decided by ``core.lifecycle`` on both; a refusal is one line in the
user's words, exit code 2.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Protocol

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from market_spine.cli import context
from market_spine.cli.output import Format, emit, say
from market_spine.cli.run import source_params
from market_spine.config import Backend
from market_spine.core.backoff import RetryPolicy
from market_spine.core.calendar import describe_week, weeks_between
from market_spine.core.partitions import Tier
from market_spine.core.resource import MAX_REASON_CHARS
from market_spine.core.states import WorkState
from market_spine.core.wording import plural
from market_spine.core.workitem import (
    BACKFILL_PRIORITY,
    DEFAULT_PRIORITY,
    EnqueueResult,
    FinraPartition,
    WorkItemSpec,
    enqueue_each,
    item_ref,
)
from market_spine.errors import UsageError
from market_spine.services.queue import LocalQueue
from market_spine.services.worker import AttemptOutcome, Worker, WorkerOptions

app = typer.Typer(help="Enqueue, list, retry, wake, cancel and dismiss work items.", no_args_is_help=True)


class Queue(Protocol):
    def enqueue(self, spec: WorkItemSpec) -> EnqueueResult: ...
    def list(self, states: list[WorkState] | None = None, pipeline: str | None = None, limit: int = 200) -> Any: ...
    def get(self, pipeline: str, partition: FinraPartition) -> Any: ...
    def retry(self, pipeline: str, partition: FinraPartition) -> Any: ...
    def cancel(self, pipeline: str, partition: FinraPartition) -> Any: ...
    def wake(self, pipeline: str, partition: FinraPartition) -> Any: ...
    def dismiss(self, pipeline: str, partition: FinraPartition, why: str) -> Any: ...


def queue() -> Queue:
    settings = context.settings()
    if settings.backend is Backend.KUBERNETES:
        from market_spine.kube.workitems import KubernetesQueue

        return KubernetesQueue(settings, clock=context.utcnow)  # type: ignore[no-any-return]
    return LocalQueue(context.engine(), context.utcnow)


def _spec(
    pipeline: str,
    partition: FinraPartition,
    *,
    params: dict[str, str],
    priority: int,
    max_attempts: int,
    backoff_seconds: int,
    factor: float,
    max_backoff_seconds: int,
    desired_at: str | None,
    chain: bool,
) -> WorkItemSpec:
    try:
        when = datetime.fromisoformat(desired_at) if desired_at else None
    except ValueError:
        raise UsageError(f"--desired-at must be an ISO timestamp with a zone, not {desired_at!r}") from None
    try:
        return WorkItemSpec(
            pipeline=context.check_pipeline(pipeline),
            partition=partition,
            params=params,
            priority=priority,
            max_attempts=max_attempts,
            retry=RetryPolicy(backoff_seconds=backoff_seconds, factor=factor, max_backoff_seconds=max_backoff_seconds),
            desired_at=when,
            chain=chain,
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UsageError(f"invalid work item: {_first_error(exc)}") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg")).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)


def _report(result: EnqueueResult) -> None:
    if result.created:
        print(f"enqueued {result.name} ({result.pipeline} {result.partition_key})")
        return
    hint = ""
    if result.state in (WorkState.CANCELLED, WorkState.FAILED, WorkState.COMPLETE):
        ref = item_ref(result.pipeline, FinraPartition.model_validate_json(result.partition_key))
        verb = "re-opens it" if result.state == WorkState.CANCELLED else "runs it again"
        hint = f"; `spine work retry {ref}` {verb}"
    print(f"already enqueued: {result.name} is {result.state}; nothing changed{hint}")


PipelineArg = Annotated[str, typer.Argument(help="Pipeline name, e.g. finra.otc_transparency.ingest_week.")]
WeekOpt = context.WeekOpt
WeekEndingOpt = context.WeekEndingOpt
TierOpt = context.TierOpt
FileOpt = Annotated[str | None, typer.Option("--file", help="Path or URL of the weekly file (ingest).")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Remote source for ingest: finra-api.")]
MaxAttemptsOpt = Annotated[int, typer.Option("--max-attempts", min=1, max=20, help="Attempts before FAILED.")]
BackoffOpt = Annotated[int, typer.Option("--backoff-seconds", min=1, help="Wait after the first failure.")]
FactorOpt = Annotated[float, typer.Option("--backoff-factor", min=1.0, help="Multiplier per further failure.")]
MaxBackoffOpt = Annotated[int, typer.Option("--max-backoff-seconds", min=1, help="Cap on any one wait.")]
ChainOpt = Annotated[bool, typer.Option("--chain/--no-chain", help="On success, enqueue the next stage.")]


@app.command()
def enqueue(
    pipeline: PipelineArg,
    tier: TierOpt,
    week: WeekOpt = None,
    week_ending: WeekEndingOpt = None,
    file: FileOpt = None,
    source: SourceOpt = None,
    priority: Annotated[int, typer.Option("--priority", min=0, max=1000, help="Higher runs first.")] = DEFAULT_PRIORITY,
    max_attempts: MaxAttemptsOpt = 3,
    backoff_seconds: BackoffOpt = 300,
    backoff_factor: FactorOpt = 2.0,
    max_backoff_seconds: MaxBackoffOpt = 3600,
    desired_at: Annotated[
        str | None, typer.Option("--desired-at", help="Do not start before (ISO, with zone).")
    ] = None,
    capture_date: Annotated[
        str | None,
        typer.Option(
            "--capture-date", help="Capture day the ingest records (YYYY-MM-DD, UTC); default: the run's day."
        ),
    ] = None,
    chain: ChainOpt = False,
) -> None:
    """Enqueue one partition. Enqueueing an existing partition is a reported no-op (exit 0).

    An ingest of a --file readable here may leave the week out: it is read off FINRA's calendar."""
    params = source_params(file, source)
    if capture_date:
        params["capture_date"] = context.parse_date(capture_date, "--capture-date").isoformat()
    spec = _spec(
        pipeline,
        context.ingest_partition(pipeline, week, week_ending, tier, file),
        params=params,
        priority=priority,
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
        factor=backoff_factor,
        max_backoff_seconds=max_backoff_seconds,
        desired_at=desired_at,
        chain=chain,
    )
    _report(queue().enqueue(spec))


@app.command()
def backfill(
    pipeline: PipelineArg,
    start: Annotated[str, typer.Option("--from", help="A date in the first trading week (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="A date in the last trading week (YYYY-MM-DD).")],
    tiers: Annotated[list[str] | None, typer.Option("--tier", help="Tier(s); default all three.")] = None,
    landing_dir: Annotated[
        Path | None,
        typer.Option(
            "--landing-dir",
            help="Folder of weekly files named as FINRA names them: finra_otc_weekly_<tier>_<publication day>.csv.",
        ),
    ] = None,
    source: SourceOpt = None,
    priority: Annotated[int, typer.Option("--priority", min=0, max=1000)] = BACKFILL_PRIORITY,
    max_attempts: MaxAttemptsOpt = 3,
    backoff_seconds: BackoffOpt = 300,
    chain: ChainOpt = True,
) -> None:
    """Enqueue trading weeks × tiers at a lower priority than live work (default 25).

    Every trading week with a day in [--from, --to] is enqueued, each named by its Monday."""
    first, last = context.parse_date(start, "--from"), context.parse_date(end, "--to")
    if last < first:
        raise UsageError("--to is before --from")
    chosen = [context.parse_tier_option(t) for t in tiers] if tiers else list(Tier)
    calendar = context.calendar()
    weeks = weeks_between(first, last)
    say(f"backfill: trading weeks {describe_week(weeks[0])} to {describe_week(weeks[-1])}")
    specs = []
    for week in weeks:
        for tier in chosen:
            file = str(landing_dir / calendar.file_name(week, tier)) if landing_dir else None
            specs.append(
                _spec(
                    pipeline,
                    FinraPartition(week=week, tier=tier),
                    params=source_params(file, source),
                    priority=priority,
                    max_attempts=max_attempts,
                    backoff_seconds=backoff_seconds,
                    factor=2.0,
                    max_backoff_seconds=3600,
                    desired_at=None,
                    chain=chain,
                )
            )
    target = queue()
    if sys.stderr.isatty():
        columns = (TextColumn("backfill"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("backfill", total=len(specs))
            results = enqueue_each(target.enqueue, specs, lambda _: bar.advance(task))
    else:
        results = enqueue_each(target.enqueue, specs)
    created = sum(r.created for r in results)
    print(f"backfill: {created} enqueued, {len(specs) - created} already enqueued ({plural(len(specs), 'partition')})")


# The fields of `work list`, in every format (a CSV header even when nothing matches).
LIST_COLUMNS = ("name", "pipeline", "week", "tier", "state", "attempts", "priority", "next_attempt_at", "last_error")


def _row(item: Any) -> dict[str, Any]:
    partition = FinraPartition.model_validate_json(item.partition_key)
    return {
        "name": item.k8s_name,
        "pipeline": item.pipeline,
        "week": partition.week,
        "tier": partition.tier.value,
        "state": item.state.value if isinstance(item.state, WorkState) else item.state,
        "attempts": f"{item.attempt_count}/{item.max_attempts}",
        "priority": item.priority,
        "next_attempt_at": item.next_attempt_at,
        "last_error": item.last_error,
    }


@app.command("list")
def list_items(
    states: Annotated[list[str] | None, typer.Option("--state", help="Only these states (repeatable).")] = None,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 200,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.TABLE,
) -> None:
    """List work items, most urgent first."""
    try:
        wanted = [WorkState(s.upper()) for s in states] if states else None
    except ValueError:
        raise UsageError(f"--state must be one of {', '.join(s.value for s in WorkState)}") from None
    rows = [_row(item) for item in queue().list(wanted, pipeline, limit)]
    emit(rows, fmt, columns=LIST_COLUMNS, title="work items")


@app.command()
def retry(pipeline: PipelineArg, tier: TierOpt, week: WeekOpt = None, week_ending: WeekEndingOpt = None) -> None:
    """Admin retry: FAILED, COMPLETE (to re-run) or CANCELLED (to re-open) → PENDING with a fresh
    attempt budget."""
    item = queue().retry(context.check_pipeline(pipeline), context.partition(week, week_ending, tier))
    print(f"{pipeline} {item.partition_key}: {_state(item)}, attempts reset")


@app.command()
def cancel(pipeline: PipelineArg, tier: TierOpt, week: WeekOpt = None, week_ending: WeekEndingOpt = None) -> None:
    """Cancel a work item that has not finished: it moves to CANCELLED. A running attempt is
    stopped, and nothing it writes is kept. `spine work retry` re-opens it."""
    target = queue()
    named, partition = context.check_pipeline(pipeline), context.partition(week, week_ending, tier)
    running = _state(target.get(named, partition)) == WorkState.RUNNING.value
    item = target.cancel(named, partition)
    stopped = "; its running attempt is being stopped and nothing it writes is kept" if running else ""
    print(f"{pipeline} {item.partition_key}: {_state(item)}{stopped}")


@app.command()
def wake(pipeline: PipelineArg, tier: TierOpt, week: WeekOpt = None, week_ending: WeekEndingOpt = None) -> None:
    """Run a RETRY_WAIT item now instead of at its next attempt time (its attempts are not reset)."""
    item = queue().wake(context.check_pipeline(pipeline), context.partition(week, week_ending, tier))
    print(f"{pipeline} {item.partition_key}: {_state(item)}, due now")


@app.command()
def dismiss(
    pipeline: PipelineArg,
    tier: TierOpt,
    week: WeekOpt = None,
    week_ending: WeekEndingOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why the failure is accepted (kept with the item).")] = "",
) -> None:
    """Accept a FAILED item: it becomes CANCELLED (reason Dismissed) and the doctor stops reporting
    it. `spine work retry` re-opens it."""
    why = reason.strip()
    if len(why) > MAX_REASON_CHARS:
        raise UsageError(f"--reason is at most {MAX_REASON_CHARS} characters")
    item = queue().dismiss(context.check_pipeline(pipeline), context.partition(week, week_ending, tier), why)
    print(f"{pipeline} {item.partition_key}: {_state(item)} (dismissed{': ' + why if why else ''})")


def _state(item: Any) -> str:
    return str(item.state.value if isinstance(item.state, WorkState) else item.state)


def _print_outcome(outcome: AttemptOutcome) -> None:
    print(outcome.line, flush=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM or Ctrl-C: stop claiming, let running attempts finish within the grace period,
    then give them back. A second signal does not wait."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        say(f"worker: {signal.Signals(signum).name} received; stopping (running attempts may finish first)")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def worker(
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Stop when nothing is runnable now.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64, help="Attempts run at once.")] = 1,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.1, help="Idle wait between polls.")] = 5.0,
) -> None:
    """Run queued work items in this process (the local backend).

    Prints one line per attempt and a summary. Claims hold a lease (SPINE_WORKER_LEASE_SECONDS)
    that a heartbeat renews; an attempt whose worker died is retried once its lease runs out.
    SIGTERM lets running attempts finish for SPINE_WORKER_GRACE_SECONDS, then gives them back."""
    settings = context.settings()
    if settings.backend is Backend.KUBERNETES:
        raise UsageError("SPINE_BACKEND=kubernetes: work is run by the operator, not by `spine worker`")
    if not logging.getLogger().isEnabledFor(logging.INFO):
        # Each attempt's outcome is one line below; the sources' per-request retries are detail (-v).
        logging.getLogger("market_spine.finra").setLevel(logging.ERROR)
    options = WorkerOptions.from_settings(settings, until_idle=until_idle)
    runner = Worker(context.engine(), context.utcnow, on_outcome=_print_outcome, options=options)
    stop = threading.Event()
    with _stop_on_signals(stop):
        if until_idle:
            report = runner.run_until_idle(concurrency, stop)
            say(f"worker {'stopped' if stop.is_set() else 'idle'}: {report.summary()}")
            return
        say(f"worker {runner.worker_id} polling every {poll_seconds}s (Ctrl-C or SIGTERM to stop)")
        report = runner.run_forever(concurrency, poll_seconds, stop)
        say(f"worker stopped: {report.summary()}")
