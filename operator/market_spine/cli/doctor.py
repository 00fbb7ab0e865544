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
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.errors import UsageError
from market_spine.services.doctor import DoctorOptions, check, report_as_dict, report_as_prometheus

EXIT_HEALTHY, EXIT_GAPS, EXIT_UNCHECKED = 0, 1, 2


class DoctorFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    PROMETHEUS = "prometheus"


def doctor(
    domain: Annotated[str, typer.Argument(help="Domain to check: finra.otc_transparency.")],
    weeks: Annotated[int, typer.Option("--weeks", min=1, max=1040, help="How many weeks back to check.")] = 12,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Check as of this date (YYYY-MM-DD); default today.")
    ] = None,
    tiers: Annotated[list[str] | None, typer.Option("--tier", help="Only these tiers (repeatable).")] = None,
    stale_days: Annotated[
        int,
        typer.Option("--stale-days", min=0, help="A tier whose newest complete week is older is stale; 0 = off."),
    ] = 14,
    lags: Annotated[
        list[str] | None,
        typer.Option("--lag", help="TIER=DAYS: a tier's week is expected DAYS after its date (repeatable)."),
    ] = None,
    landing_dir: Annotated[
        Path | None,
        typer.Option("--landing-dir", help="Folder of weekly files; remediations use --file for files found here."),
    ] = None,
    fmt: Annotated[DoctorFormat, typer.Option("--format", help="table, json or prometheus.")] = DoctorFormat.TABLE,
) -> None:
    """Report missing partitions, incomplete stage chains, stale tiers and FAILED work."""
    if domain != DOMAIN:
        raise UsageError(f"unknown domain {domain!r}; known domains: {DOMAIN}")
    settings = context.settings()
    options = DoctorOptions(
        domain=domain,
        weekday=settings.week_ending_weekday,
        publication_lag_days=settings.publication_lag_days | _parse_lags(lags or []),
        weeks=weeks,
        as_of=context.parse_date(as_of, "--as-of") if as_of else None,
        tiers=tuple(context.parse_tier_option(t) for t in tiers) if tiers else DoctorOptions.tiers,
        stale_after_days=stale_days or None,
        landing_dir=landing_dir or settings.landing_dir,
    )
    report = check(context.engine(), options, context.utcnow().date())
    if fmt is DoctorFormat.JSON:
        print(json.dumps(report_as_dict(report, options), indent=2))
    elif fmt is DoctorFormat.PROMETHEUS:
        print(report_as_prometheus(report, options), end="")
    else:
        _print_table(report_as_dict(report, options))
    raise typer.Exit(EXIT_HEALTHY if report.healthy else EXIT_GAPS)


def _parse_lags(items: list[str]) -> dict[Tier, int]:
    lags: dict[Tier, int] = {}
    for item in items:
        tier, sep, days = item.partition("=")
        if not sep or not days.strip().isdigit():
            raise UsageError(f"--lag takes TIER=DAYS, e.g. NMS_TIER_1=14, not {item!r}")
        lags[context.parse_tier_option(tier)] = int(days)
    return lags


def _print_table(data: dict[str, object]) -> None:
    head = (
        f"{data['domain']} as of {data['as_of']}: {data['expected_partitions']} partitions expected over "
        f"{data['weeks']} weeks; {data['missing_partitions']} missing, {data['incomplete_partitions']} incomplete, "
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
                "week_ending": g.get(
                    "week_ending", g.get("newest_week", (g.get("partition") or {}).get("week_ending"))
                ),
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
    if gap["kind"] == "failed_work":
        return f"{gap['pipeline']}: {gap['last_error'] or ''}"
    return "no data"
