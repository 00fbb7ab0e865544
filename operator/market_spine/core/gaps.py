"""Gap detection (SPEC §5): expected partitions against the manifest, as a pure function.

``services.doctor`` asks ``core.calendar`` which (trading week, tier) partitions FINRA has
published (plus the grace), loads the manifest, the failed work items and the lost attempts, calls
:func:`detect_gaps`, and renders the :class:`GapReport`. Each gap carries the one ``spine`` command
that fills it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from market_spine.core.calendar import WEEK
from market_spine.core.partitions import Tier
from market_spine.core.stages import INGEST, STAGE_ORDER, STAGE_PIPELINE, Stage

Partition = tuple[date, Tier]
# For a missing partition, the ``spine run`` arguments that say where its data comes from
# (``--file PATH`` when a landing file exists, else ``--source finra-api``).
IngestSource = Callable[[date, Tier], Sequence[str]]
# The day from which the platform should hold a (week, tier): FINRA's first publication + grace.
Due = Callable[[date, Tier], date]


@dataclass(frozen=True)
class MissingPartition:
    week: date
    tier: Tier
    remediation: str
    kind: str = "missing_partition"


@dataclass(frozen=True)
class IncompleteChain:
    """A partition whose later stages do not hold its newest data. ``missing`` lists them; those
    of them that are in the manifest but were computed from an older load of their input (a
    replayed ingest, a normalize run without compute after it) are also in ``stale``."""

    week: date
    tier: Tier
    present: tuple[Stage, ...]
    missing: tuple[Stage, ...]
    remediation: str
    stale: tuple[Stage, ...] = ()
    kind: str = "incomplete_chain"


@dataclass(frozen=True)
class StaleTier:
    tier: Tier
    newest_week: date | None
    age_days: int | None
    remediation: str
    kind: str = "stale"


@dataclass(frozen=True)
class FailedWork:
    pipeline: str
    partition_key: str
    last_error: str | None
    remediation: str
    kind: str = "failed_work"


@dataclass(frozen=True)
class LostWork:
    """A local attempt still RUNNING whose lease (or deadline) has passed: its worker died or lost
    the database, and no worker has re-attempted it yet (any running ``spine worker`` does, within
    one poll). The Kubernetes backend has no leases: the operator watches its Jobs instead."""

    pipeline: str
    partition_key: str
    worker: str | None
    overdue_since: datetime
    remediation: str = "spine worker --until-idle"
    kind: str = "lost_work"


@dataclass(frozen=True)
class GapReport:
    as_of: date
    expected: int
    missing: list[MissingPartition] = field(default_factory=list)
    incomplete: list[IncompleteChain] = field(default_factory=list)
    stale: list[StaleTier] = field(default_factory=list)
    failed: list[FailedWork] = field(default_factory=list)
    lost: list[LostWork] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not (self.missing or self.incomplete or self.stale or self.failed or self.lost)

    @property
    def gap_count(self) -> int:
        return len(self.missing) + len(self.incomplete) + len(self.stale) + len(self.failed) + len(self.lost)


@dataclass(frozen=True)
class StageMark:
    """A partition's manifest row for one stage: when it last ran, the capture it holds, the
    execution that wrote it, and the execution that wrote the input it was computed from
    (``None``: not recorded, a row written before lineage was)."""

    updated_at: datetime
    capture_id: str
    execution_id: str | None = None
    upstream_execution_id: str | None = None


def current_stages(stages: Mapping[Stage, StageMark]) -> tuple[dict[Stage, datetime], tuple[Stage, ...]]:
    """(the stages of a partition that hold its newest data, by ``updated_at``; the stages in the
    manifest that were computed from an older load of their input).

    A stage is current when it holds RAW's capture and was computed from the current execution of
    the stage before it, itself current. So after a restatement ingested without ``--chain``,
    NORMALIZED and CALC hold the old capture and count as missing; after a replay of the same
    capture (same capture id, new rows), they hold the right capture but were computed from the
    previous load: stale, and missing too. Either way the doctor asks for the re-run that brings
    them up to date. With no RAW row, every stage counts (nothing to compare with).
    """
    raw = stages.get(Stage.RAW)
    if raw is None:
        return {stage: mark.updated_at for stage, mark in stages.items()}, ()
    current = {Stage.RAW: raw.updated_at}
    stale: list[Stage] = []
    before: StageMark | None = raw  # the current mark of the previous stage, if it is current
    for stage in STAGE_ORDER[1:]:
        mark = stages.get(stage)
        if mark is None or mark.capture_id != raw.capture_id:
            before = None
            continue
        recorded = mark.upstream_execution_id
        if before is not None and (recorded is None or recorded == before.execution_id):
            current[stage] = mark.updated_at
            before = mark
        else:
            stale.append(stage)
            before = None
    return current, tuple(stale)


def run_command(pipeline: str, week: date, tier: Tier, extra: Sequence[str] = (), chain: bool = True) -> str:
    args = ["spine", "run", pipeline, "--week", week.isoformat(), "--tier", tier.value, *extra]
    if chain:
        args.append("--chain")
    return shlex.join(args)


def retry_command(pipeline: str, partition_key: str) -> str:
    """``spine work retry`` for a FINRA partition key (canonical JSON with week and tier)."""
    partition = json.loads(partition_key)
    return shlex.join(["spine", "work", "retry", pipeline, "--week", partition["week"], "--tier", partition["tier"]])


def _monday(week: date, _tier: Tier) -> date:
    return week


def detect_gaps(
    *,
    as_of: date,
    expected: Iterable[Partition],
    manifest: Mapping[Partition, Mapping[Stage, datetime]],
    failed_work: Iterable[tuple[str, str, str | None]] = (),
    lost_work: Iterable[LostWork] = (),
    ingest_source: IngestSource = lambda _w, _t: ("--source", "finra-api"),
    stale_after_days: int | None = None,
    due: Due | None = None,
    outdated: Mapping[Partition, Sequence[Stage]] | None = None,
) -> GapReport:
    """Compare ``expected`` partitions with the ``manifest`` (partition → current stage →
    updated_at, see :func:`current_stages`; ``outdated``: the stages in the manifest that it
    leaves out because they were computed from an older load of their input).

    * missing: no stage at all for an expected partition → ingest with ``--chain``;
    * incomplete: a prefix of the chain is current but a later stage is not (absent, or computed
      from an older load) → run the first such stage with ``--chain`` (it reads the stage before
      it from the database);
    * stale: the week after a tier's newest complete (CALC) week has been ``due`` (FINRA published
      it, plus the grace) for more than ``stale_after_days`` days (with no ``due``, every week is
      due on its Monday); tiers already reported as missing or incomplete are not counted twice;
    * failed: work items stuck in FAILED → ``spine work retry``;
    * lost: local attempts whose lease ran out with no worker to re-attempt them → ``spine worker``.
    """
    expected_list = sorted(set(expected))
    report = GapReport(as_of=as_of, expected=len(expected_list))
    for week, tier in expected_list:
        stages = manifest.get((week, tier), {})
        if not stages:
            report.missing.append(
                MissingPartition(week, tier, run_command(INGEST, week, tier, ingest_source(week, tier)))
            )
            continue
        absent = tuple(s for s in STAGE_ORDER if s not in stages)
        if absent:
            first = absent[0]
            present = tuple(s for s in STAGE_ORDER if s in stages)
            command = (
                run_command(INGEST, week, tier, ingest_source(week, tier))
                if first is Stage.RAW
                else run_command(STAGE_PIPELINE[first], week, tier)
            )
            behind = tuple(s for s in (outdated or {}).get((week, tier), ()) if s in absent)
            report.incomplete.append(IncompleteChain(week, tier, present, absent, command, behind))
    if stale_after_days is not None:
        already = {g.tier for g in report.missing} | {g.tier for g in report.incomplete}
        tiers = sorted({tier for _, tier in expected_list} - already)
        for tier in tiers:
            weeks = [w for (w, t), stages in manifest.items() if t is tier and Stage.CALC in stages]
            newest = max(weeks, default=None)
            age = (as_of - newest).days if newest else None
            # A tier is naturally weeks behind the calendar (FINRA publishes late): it is stale
            # only once the week after its newest one has been out for longer than allowed.
            overdue = (as_of - (due or _monday)(newest + WEEK, tier)).days if newest else None
            if overdue is None or overdue > stale_after_days:
                wanted = [w for w, t in expected_list if t is tier]
                fix = (
                    run_command(INGEST, wanted[-1], tier, ingest_source(wanted[-1], tier))
                    if wanted
                    else "spine work backfill --help"
                )
                report.stale.append(StaleTier(tier, newest, age, fix))
    for pipeline, partition_key, error in failed_work:
        report.failed.append(FailedWork(pipeline, partition_key, error, retry_command(pipeline, partition_key)))
    report.lost.extend(lost_work)
    return report
