"""``spine doctor``: gap detection over the manifest and the work queue (SPEC §5).

Called by the CLI (and the chart's daily CronJob) and the operator's gap probe. What should exist
comes from FINRA's publication calendar (``core.calendar`` on NYSE business days, from
``finra.schedule``): for each tier, its ``weeks`` newest trading weeks whose first publication plus
the grace (``SPINE_PUBLICATION_GRACE_DAYS``) has passed. What exists — ``core_manifest`` for those
weeks and work items stuck in FAILED — is loaded here and both are handed to the pure
``core.gaps.detect_gaps``; then the report is rendered as a table, stable JSON, or Prometheus text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from market_spine.core.calendar import PublicationCalendar
from market_spine.core.gaps import GapReport, IngestSource, LostWork, StageMark, current_stages, detect_gaps
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.stages import Stage
from market_spine.core.states import WorkState
from market_spine.db import workitems as repo
from market_spine.db.schema import core_manifest
from market_spine.errors import UsageError
from market_spine.finra.schedule import finra_calendar

# 2: partitions are trading weeks ("week", with "published_on"), no longer "week_ending".
JSON_SCHEMA_VERSION = 2
DEFAULT_GRACE_DAYS = 1


@dataclass(frozen=True)
class DoctorOptions:
    domain: str = DOMAIN
    weeks: int = 12
    as_of: date | None = None
    tiers: tuple[Tier, ...] = tuple(Tier)
    grace_days: int = DEFAULT_GRACE_DAYS
    stale_after_days: int | None = 14
    landing_dir: Path | None = None

    @property
    def calendar(self) -> PublicationCalendar:
        return finra_calendar(self.grace_days)


def _ingest_source(landing_dir: Path | None, calendar: PublicationCalendar) -> IngestSource:
    def source(week: date, tier: Tier) -> Sequence[str]:
        if landing_dir is not None:
            candidate = landing_dir / calendar.file_name(week, tier)
            if candidate.is_file():
                return ("--file", str(candidate))
        return ("--source", "finra-api")

    return source


def check(engine: Engine, options: DoctorOptions, today: date, now: datetime | None = None) -> GapReport:
    """The gaps of ``options.domain`` as of ``options.as_of`` (else ``today``); with ``now``, also
    the local attempts whose lease or deadline had passed by then (lost, not yet re-attempted)."""
    as_of = options.as_of or today
    calendar = options.calendar
    try:
        expected = calendar.expected_partitions(as_of, options.weeks, options.tiers)
    except OverflowError:  # the window runs off the calendar (year 1, or past year 9999)
        raise UsageError(
            f"--as-of {as_of.isoformat()} with --weeks {options.weeks}: the weeks to check fall outside the "
            "calendar (years 1 to 9999); give a date of FINRA's era"
        ) from None
    weeks = sorted({week for week, _ in expected})
    marks: dict[tuple[date, Tier], dict[Stage, StageMark]] = {}
    with engine.connect() as conn:
        if weeks:
            m = core_manifest.c
            rows = conn.execute(
                select(m.week, m.tier, m.stage, m.updated_at, m.capture_id, m.execution_id, m.upstream_execution_id)
                .where(m.domain == options.domain)
                .where(m.week.between(weeks[0], weeks[-1]))
            )
            for week, tier, stage, *mark in rows:
                marks.setdefault((week, Tier(tier)), {})[Stage(stage)] = StageMark(*mark)
        failed = repo.list_items(conn, domain=options.domain, states=[WorkState.FAILED], limit=10_000)
        overdue = repo.overdue_in(conn, options.domain, now) if now is not None else []
    lost = [LostWork(item.pipeline, item.partition_key, item.locked_by, _overdue_since(item)) for item in overdue]
    judged = {partition: current_stages(stages) for partition, stages in marks.items()}
    return detect_gaps(
        as_of=as_of,
        expected=expected,
        manifest={partition: current for partition, (current, _) in judged.items()},
        outdated={partition: stale for partition, (_, stale) in judged.items() if stale},
        failed_work=[(item.pipeline, item.partition_key, item.last_error) for item in failed],
        lost_work=lost,
        ingest_source=_ingest_source(options.landing_dir, calendar),
        stale_after_days=options.stale_after_days,
        due=calendar.due,
    )


def _overdue_since(item: repo.WorkItemRecord) -> datetime:
    """When an overdue attempt's lease or deadline passed, whichever came first."""
    return min(t for t in (item.lease_expires_at, item.deadline_at) if t is not None)


def report_as_dict(report: GapReport, options: DoctorOptions) -> dict[str, Any]:
    """The stable JSON shape (documented in docs/ops/gap-detection.md)."""
    calendar = options.calendar

    def published(week: date, tier: Tier) -> str:
        return calendar.first_publication(week, tier).isoformat()

    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "domain": options.domain,
        "as_of": report.as_of.isoformat(),
        "weeks": options.weeks,
        "grace_days": options.grace_days,
        "tiers": [t.value for t in options.tiers],
        "healthy": report.healthy,
        "expected_partitions": report.expected,
        "missing_partitions": len(report.missing),
        "incomplete_partitions": len(report.incomplete),
        "stale_tiers": len(report.stale),
        "failed_work": len(report.failed),
        "lost_work": len(report.lost),
        "gaps": [
            *(
                {
                    "kind": g.kind,
                    "week": g.week.isoformat(),
                    "tier": g.tier.value,
                    "published_on": published(g.week, g.tier),
                    "remediation": g.remediation,
                }
                for g in report.missing
            ),
            *(
                {
                    "kind": g.kind,
                    "week": g.week.isoformat(),
                    "tier": g.tier.value,
                    "published_on": published(g.week, g.tier),
                    "present_stages": [s.value for s in g.present],
                    "missing_stages": [s.value for s in g.missing],
                    "stale_stages": [s.value for s in g.stale],
                    "remediation": g.remediation,
                }
                for g in report.incomplete
            ),
            *(
                {
                    "kind": g.kind,
                    "tier": g.tier.value,
                    "newest_week": g.newest_week.isoformat() if g.newest_week else None,
                    "age_days": g.age_days,
                    "remediation": g.remediation,
                }
                for g in report.stale
            ),
            *(
                {
                    "kind": g.kind,
                    "pipeline": g.pipeline,
                    "partition": json.loads(g.partition_key),
                    "last_error": g.last_error,
                    "remediation": g.remediation,
                }
                for g in report.failed
            ),
            *(
                {
                    "kind": g.kind,
                    "pipeline": g.pipeline,
                    "partition": json.loads(g.partition_key),
                    "worker": g.worker,
                    "overdue_since": g.overdue_since.isoformat(),
                    "remediation": g.remediation,
                }
                for g in report.lost
            ),
        ],
    }


def report_as_prometheus(report: GapReport, options: DoctorOptions) -> str:
    """Prometheus text exposition, for a textfile collector or a Pushgateway."""
    label = f'domain="{options.domain}"'
    metrics = [
        ("market_spine_partition_gaps", "Expected partitions with no data at all.", len(report.missing)),
        (
            "market_spine_incomplete_partitions",
            "Partitions whose stage chain stops early.",
            len(report.incomplete),
        ),
        ("market_spine_stale_tiers", "Tiers whose newest complete week is too old.", len(report.stale)),
        ("market_spine_failed_work", "Work items stuck in FAILED.", len(report.failed)),
        (
            "market_spine_lost_work",
            "Local attempts past their lease, not re-attempted yet.",
            len(report.lost),
        ),
        ("market_spine_expected_partitions", "Partitions expected in the window.", report.expected),
    ]
    lines: list[str] = []
    for name, help_text, value in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{label}}} {value}"]
    return "\n".join(lines) + "\n"
