"""``spine doctor``: find missing weeks, tiers and stages, and print the commands that fill them.

The table format is for people: a verdict, what the database holds, and each gap with its
remediation command on a line of its own, so no terminal width cuts the command a user copies.
JSON and Prometheus are for programs (``services.doctor``). Exit codes: 0 healthy, 1 gaps found,
2 could not check (database unreachable, bad arguments); see docs/reference/exit-codes.md.
"""

from __future__ import annotations

import enum
import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from market_spine.cli import context
from market_spine.cli.output import console, is_tty
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.wording import plural
from market_spine.errors import UsageError
from market_spine.services import query
from market_spine.services.doctor import DoctorOptions, check, report_as_dict, report_as_prometheus

EXIT_HEALTHY, EXIT_GAPS, EXIT_UNCHECKED = 0, 1, 2


class DoctorFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    PROMETHEUS = "prometheus"


def doctor(
    domain: Annotated[str, typer.Argument(help="Domain to check: finra.otc_transparency.")],
    weeks: Annotated[
        int, typer.Option("--weeks", min=1, max=1040, help="How many of each tier's newest published weeks to check.")
    ] = 12,
    as_of: Annotated[
        str | None, typer.Option("--as-of", metavar="DATE", help="Check as of this date (YYYY-MM-DD); default today.")
    ] = None,
    tiers: Annotated[
        list[str] | None, typer.Option("--tier", metavar="TIER", help="Only these tiers (repeatable).")
    ] = None,
    stale_days: Annotated[
        int,
        typer.Option(
            "--stale-days", min=0, help="Stale: the week after a tier's newest complete week is this overdue; 0 = off."
        ),
    ] = 14,
    grace_days: Annotated[
        int | None,
        typer.Option(
            "--grace-days",
            min=0,
            max=60,
            help="Days after FINRA's first publication before a week is expected "
            "(default: SPINE_PUBLICATION_GRACE_DAYS, 1).",
        ),
    ] = None,
    landing_dir: Annotated[
        Path | None,
        typer.Option(
            "--landing-dir", metavar="DIR", help="Folder of weekly files; remediations use --file for files found here."
        ),
    ] = None,
    fmt: Annotated[DoctorFormat, typer.Option("--format", help="table, json or prometheus.")] = DoctorFormat.TABLE,
) -> None:
    """Report missing partitions, incomplete stage chains, stale tiers and FAILED work.

    Expected: for each tier, its --weeks newest trading weeks that FINRA has published (on its
    calendar: 21 days after the week's Monday for NMS Tier 1, 35 for Tier 2 and OTC, the next
    business day after a holiday) at least --grace-days before --as-of."""
    if domain != DOMAIN:
        raise UsageError(f"unknown domain {domain!r}; known domains: {DOMAIN}")
    settings = context.settings()
    options = DoctorOptions(
        domain=domain,
        grace_days=settings.publication_grace_days if grace_days is None else grace_days,
        weeks=weeks,
        as_of=context.parse_date(as_of, "--as-of") if as_of else None,
        tiers=tuple(context.parse_tier_option(t) for t in tiers) if tiers else DoctorOptions.tiers,
        stale_after_days=stale_days or None,
        landing_dir=landing_dir or settings.landing_dir,
    )
    engine = context.engine()
    now = context.utcnow()
    report = check(engine, options, now.date(), now)
    if fmt is DoctorFormat.JSON:
        print(json.dumps(report_as_dict(report, options), indent=2))
    elif fmt is DoctorFormat.PROMETHEUS:
        print(report_as_prometheus(report, options), end="")
    else:
        _print_report(report_as_dict(report, options), query.computed_weeks(engine, domain))
    raise typer.Exit(EXIT_HEALTHY if report.healthy else EXIT_GAPS)


def _print_report(data: dict[str, Any], held: dict[Tier, tuple[int, date, date]]) -> None:
    """The human report: a verdict line, what the database holds, then each gap as a line of facts
    followed by the command that fills it on a line of its own (never cut, whatever the width)."""
    weeks = plural(int(data["weeks"]), "newest published week")
    head = (
        f"{data['domain']} as of {data['as_of']}: {plural(data['expected_partitions'], 'partition')} expected "
        f"(each tier's {weeks}); {data['missing_partitions']} missing, {data['incomplete_partitions']} incomplete, "
        f"{plural(data['stale_tiers'], 'stale tier')}, {plural(data['failed_work'], 'failed work item')}"
    )
    if data["lost_work"]:  # named only when there is one: most reports (and the operator's) have none
        head += f", {plural(data['lost_work'], 'lost attempt')}"
    verdict = "HEALTHY" if data["healthy"] else "GAPS FOUND"
    if is_tty():
        console().print(f"[bold]{verdict}[/bold]: {head}", markup=True)
    else:
        print(f"{verdict}: {head}")
    print("computed weeks held: " + "; ".join(_holding(tier, held.get(tier)) for tier in Tier))
    for number, gap in enumerate(data["gaps"], start=1):
        where = "  ".join(str(part) for part in _where(gap) if part)
        print(f"\n{number}. {gap['kind']}  {where}  {_detail(gap)}")
        print(f"   {gap['remediation']}")


def _holding(tier: Tier, held: tuple[int, date, date] | None) -> str:
    if held is None:
        return f"{tier.value} none"
    count, oldest, newest = held
    span = newest.isoformat() if oldest == newest else f"{oldest.isoformat()} to {newest.isoformat()}"
    return f"{tier.value} {plural(count, 'week')} ({span})"


def _where(gap: dict[str, Any]) -> tuple[str, str]:
    partition = gap.get("partition") or {}
    week = gap.get("week") or gap.get("newest_week") or partition.get("week") or ""
    return f"week {week}" if week else "", gap.get("tier") or partition.get("tier") or ""


def _detail(gap: dict[str, Any]) -> str:
    if gap["kind"] == "incomplete_chain":
        stale: list[str] = gap.get("stale_stages") or []
        absent = [s for s in gap["missing_stages"] if s not in stale]
        parts = [f"has {','.join(gap['present_stages'])}"]
        if absent:
            parts.append(f"lacks {','.join(absent)}")
        if stale:
            parts.append(f"{','.join(stale)} computed from an older load")
        return "; ".join(parts)
    if gap["kind"] == "stale":
        return f"newest complete week {gap['newest_week'] or 'none'}"
    if gap["kind"] == "missing_partition":
        return f"no data; FINRA published it on {gap['published_on']}"
    if gap["kind"] == "failed_work":
        return f"{gap['pipeline']}: {gap['last_error'] or ''}"
    if gap["kind"] == "lost_work":
        worker = f"worker {gap['worker']}" if gap["worker"] else "its worker"
        return (
            f"{gap['pipeline']}: RUNNING, but {worker} stopped renewing its lease "
            f"(overdue since {gap['overdue_since']}); a running `spine worker` re-attempts it (WorkerLost)"
        )
    return "no data"  # pragma: no cover - every kind is handled above
