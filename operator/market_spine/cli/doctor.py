"""``spine doctor``: find missing weeks, tiers and stages, and print the commands that fill them.

Exit codes: 0 healthy, 1 gaps found, 2 could not check (database unreachable, bad arguments).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from market_spine.cli import context
from market_spine.cli.output import Format, emit, is_tty
from market_spine.core.partitions import DOMAIN
from market_spine.errors import UsageError
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
        str | None, typer.Option("--as-of", help="Check as of this date (YYYY-MM-DD); default today.")
    ] = None,
    tiers: Annotated[list[str] | None, typer.Option("--tier", help="Only these tiers (repeatable).")] = None,
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
        typer.Option("--landing-dir", help="Folder of weekly files; remediations use --file for files found here."),
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
    try:
        report = check(context.engine(), options, context.utcnow().date())
    except OverflowError:  # the calendar walks back from --as-of (and forward to publication days)
        day = options.as_of.isoformat() if options.as_of else "today"
        raise UsageError(
            f"--as-of {day} is too close to the ends of the calendar (years 1 to 9999): the doctor looks "
            f"{weeks} weeks back from it, and FINRA publishes a week up to 5 weeks after it"
        ) from None
    if fmt is DoctorFormat.JSON:
        print(json.dumps(report_as_dict(report, options), indent=2))
    elif fmt is DoctorFormat.PROMETHEUS:
        print(report_as_prometheus(report, options), end="")
    else:
        _print_table(report_as_dict(report, options))
    raise typer.Exit(EXIT_HEALTHY if report.healthy else EXIT_GAPS)


def _print_table(data: dict[str, object]) -> None:
    head = (
        f"{data['domain']} as of {data['as_of']}: {data['expected_partitions']} partitions expected (each tier's "
        f"{data['weeks']} newest published weeks); {data['missing_partitions']} missing, "
        f"{data['incomplete_partitions']} incomplete, "
        f"{data['stale_tiers']} stale tiers, {data['failed_work']} failed work items"
    )
    verdict = "HEALTHY" if data["healthy"] else "GAPS FOUND"
    if is_tty():
        Console().print(f"[bold]{verdict}[/bold]  {head}")
    else:
        print(f"{verdict}: {head}")
    gaps = data["gaps"]
    assert isinstance(gaps, list)
    if gaps:
        rows = [
            {
                "kind": g["kind"],
                "week": g.get("week", g.get("newest_week", (g.get("partition") or {}).get("week"))),
                "tier": g.get("tier", (g.get("partition") or {}).get("tier", "")),
                "detail": _detail(g),
                "remediation": g["remediation"],
            }
            for g in gaps
        ]
        emit(rows, Format.TABLE, title="gaps")


def _detail(gap: dict[str, object]) -> str:
    if gap["kind"] == "incomplete_chain":
        return f"has {','.join(gap['present_stages'])}; lacks {','.join(gap['missing_stages'])}"  # type: ignore[arg-type]
    if gap["kind"] == "stale":
        return f"newest complete week {gap['newest_week'] or 'none'}"
    if gap["kind"] == "missing_partition":
        return f"no data; FINRA published it on {gap['published_on']}"
    if gap["kind"] == "failed_work":
        return f"{gap['pipeline']}: {gap['last_error'] or ''}"
    return "no data"  # pragma: no cover - every kind is handled above
