"""The local worker's account of its attempts: one line in words per outcome, and a summary.

Called by ``services.worker`` (which builds an :class:`AttemptOutcome` for every attempt it ends,
or finds ended) and printed by ``spine worker`` and ``make demo``: what happened, why in a
sentence (``services.failures``), and what comes next (the time of the next attempt, or the
command that re-opens a FAILED item), instead of log lines.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from market_spine.core import lifecycle
from market_spine.core.states import WorkState
from market_spine.core.wording import plural
from market_spine.core.workitem import FinraPartition
from market_spine.db import workitems as repo
from market_spine.pipelines.registry import StageResult
from market_spine.services.decisions import Carried
from market_spine.services.failures import Failure


@dataclass
class AttemptOutcome:
    item_id: int
    pipeline: str
    partition_key: str
    attempt: int  # the attempt's number in its budget (``attempt 2/3``)
    state: WorkState  # the item's state after it
    error: str | None = None
    max_attempts: int = 0
    next_attempt_at: datetime | None = None
    text: str = ""  # what happened, in words

    @property
    def line(self) -> str:
        """``ingest_week 2025-11-10 OTC: attempt 1/3 completed in 2.1s (5,328 rows, capture …)``"""
        partition = FinraPartition.model_validate_json(self.partition_key)
        stage = self.pipeline.rsplit(".", 1)[-1]
        return (
            f"{stage} {partition.week} {partition.tier.value}: attempt {self.attempt}/{self.max_attempts} {self.text}"
        )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _next(item: repo.WorkItemRecord, now: datetime | None) -> str:
    if item.state is WorkState.RETRY_WAIT and item.next_attempt_at is not None:
        wait = f" (in {lifecycle.seconds_text(item.next_attempt_at - now)})" if now is not None else ""
        return f"; next attempt at {_when(item.next_attempt_at)}{wait}"
    if item.state is WorkState.FAILED:
        why = "no attempts left" if item.attempt_count >= item.max_attempts else "not retryable"
        return f"; FAILED ({why}): `spine work retry {item.ref}` re-opens it"
    return ""


def outcome_of(
    claimed: repo.WorkItemRecord,
    carried: Carried,
    *,
    result: StageResult | None = None,
    failure: Failure | None = None,
    stopped: str | None = None,
) -> AttemptOutcome:
    """The outcome of the attempt ``claimed`` started (the row as it was while the attempt ran),
    now that ``carried`` wrote how it ended."""
    item = carried.record
    now = item.updated_at
    if failure is not None:
        text = f"failed: {failure.text}{_next(item, now)}"
    elif result is not None and item.state is WorkState.COMPLETE:
        took = f" in {lifecycle.seconds_text(now - claimed.started_at)}" if claimed.started_at else ""
        rejected = f", {plural(result.rejected, 'row')} rejected" if result.rejected else ""
        text = f"completed{took} ({plural(result.row_count, 'row')}{rejected}, capture {result.capture_id})"
        chained = [n.message for n in carried.notes if n.reason in ("Chained", "ChainDeferred", "ChainSkipped")]
        if chained:
            text += "; " + "; ".join(chained)
    elif result is not None and item.state is WorkState.PENDING:
        text = "completed, but its input changed while it ran: it runs again on the new input"
    elif item.state is WorkState.PENDING:
        text = f"given back unfinished ({stopped}): it does not count against the budget and runs again on a worker"
    elif item.state is WorkState.CANCELLED:
        text = f"stopped: {stopped or 'the item was cancelled'}"
    else:
        text = f"ended: {stopped or 'by someone else'}{_next(item, now)}"
    return AttemptOutcome(
        item_id=claimed.id,
        pipeline=claimed.pipeline,
        partition_key=claimed.partition_key,
        attempt=claimed.attempt_count,
        state=item.state,
        error=failure.error if failure else None,
        max_attempts=claimed.max_attempts,
        next_attempt_at=item.next_attempt_at if item.state is WorkState.RETRY_WAIT else None,
        text=text,
    )


@dataclass
class WorkerReport:
    outcomes: list[AttemptOutcome] = field(default_factory=list)

    def count(self, state: WorkState) -> int:
        return sum(1 for o in self.outcomes if o.state is state)

    def summary(self) -> str:
        """``3 completed, 1 retrying (next attempt at …), 1 failed``; ``nothing to do`` when idle.
        Counted by where each attempt left its item."""
        if not self.outcomes:
            return "nothing to do"
        words = {
            WorkState.COMPLETE: "completed",
            WorkState.RETRY_WAIT: "retrying",
            WorkState.FAILED: "failed",
            WorkState.CANCELLED: "cancelled",
            WorkState.PENDING: "to run again",
            WorkState.RUNNING: "still running",
        }
        counts = Counter(o.state for o in self.outcomes)
        parts = []
        for state, word in words.items():
            if counts[state]:
                part = f"{counts[state]:,} {word}"
                if state is WorkState.RETRY_WAIT:
                    times = sorted({o.next_attempt_at for o in self.outcomes if o.next_attempt_at is not None})
                    if times:
                        shown = ", ".join(_when(t) for t in times[:3]) + (", …" if len(times) > 3 else "")
                        part += f" (next attempt{'s' if len(times) > 1 else ''} at {shown})"
                parts.append(part)
        return f"{plural(len(self.outcomes), 'attempt')}: " + ", ".join(parts)
