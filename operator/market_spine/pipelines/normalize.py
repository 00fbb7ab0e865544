"""``finra.otc_transparency.normalize_week``: validate one capture's raw rows into normalized rows
or rejects with a reason (stage NORMALIZED).

Called through the registry by ``services.runs``. Reads the capture named by
``ctx.params["capture_id"]``, else the partition's latest RAW capture. Every raw row ends up in
exactly one of ``normalized`` and ``rejects`` (normalized + rejects = raw): nothing is dropped
silently, and a bad row never aborts the batch. Rules, first failure wins:

- the row has all of FINRA's fields;
- ``lastUpdateDate`` is the partition's week (a row for another week is never mixed in);
- ``tierDescription`` is a known tier alias and is the partition's tier;
- symbol and MPID are non-blank once stripped (both are upper-cased);
- share quantity and trade count are non-negative integers (plain digits: "1,234" is rejected,
  because FINRA never writes it and guessing a thousands separator could invent volume).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import cast

from sqlalchemy import delete, select

from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.core.stages import NORMALIZE, Stage
from market_spine.db.schema import normalized, raw, rejects
from market_spine.finra.files import HEADER
from market_spine.pipelines.copy import copy_rows
from market_spine.pipelines.manifest import lock_capture, resolve_raw_capture, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

NORMALIZED_COLUMNS: tuple[str, ...] = (
    "capture_id",
    "captured_at",
    "execution_id",
    "week_ending",
    "tier",
    "line_number",
    "record_hash",
    "symbol",
    "issue_name",
    "mpid",
    "market_participant_name",
    "share_quantity",
    "trade_count",
)
REJECT_COLUMNS: tuple[str, ...] = (
    "capture_id",
    "captured_at",
    "execution_id",
    "week_ending",
    "tier",
    "stage",
    "line_number",
    "reason",
    "record",
)
# The raw columns in the file's order, so a reject's record reads like the line it came from.
RAW_FIELDS = (
    raw.c.tier_description,
    raw.c.issue_symbol_identifier,
    raw.c.issue_name,
    raw.c.market_participant_name,
    raw.c.mpid,
    raw.c.total_weekly_share_quantity,
    raw.c.total_weekly_trade_count,
    raw.c.last_update_date,
)
BIGINT_MAX = 2**63 - 1
SAFE_DIGITS = 18  # any number of at most 18 digits fits a BIGINT: no range check needed


def _count_error(name: str, value: str) -> str | None:
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return f"{name} is not a non-negative integer: {value!r}"
    if int(text) > BIGINT_MAX:
        return f"{name} is out of range: {value!r}"
    return None


def _week_error(value: str, week_ending: date) -> str:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return f"lastUpdateDate is not a date: {value!r}"
    return f"row is for week {day.isoformat()}, not {week_ending.isoformat()}"


class RowValidator:
    """Judges raw rows of one partition; remembers tier spellings it has already folded."""

    def __init__(self, week_ending: date, tier: Tier) -> None:
        self.week_ending = week_ending
        self.week_text = week_ending.isoformat()
        self.tier = tier
        self._tiers: dict[str, Tier | None] = {}
        self._ok: dict[str | None, bool] = {}

    def _tier_error(self, value: str) -> str | None:
        if value not in self._tiers:
            try:
                self._tiers[value] = parse_tier(value)
            except UnknownTier:
                self._tiers[value] = None
        found = self._tiers[value]
        if found is None:
            return f"unknown tier {value!r}"
        if found is not self.tier:
            return f"row is for tier {found.value}, not {self.tier.value}"
        return None

    def tier_ok(self, value: str | None) -> bool:
        """Whether ``value`` names the partition's tier (cached per spelling: a week has one or two)."""
        ok = self._ok.get(value)
        if ok is None:
            ok = self._ok[value] = value is not None and self._tier_error(value) is None
        return ok

    def check(self, fields: Sequence[str | None]) -> tuple[str, str, int, int] | str:
        """(symbol, mpid, shares, trades) for a good row, else the reason it is rejected."""
        missing = [name for name, value in zip(HEADER, fields, strict=True) if value is None]
        if missing:
            present = len(HEADER) - len(missing)
            return f"malformed row: {present} of {len(HEADER)} pipe-delimited fields; missing {', '.join(missing)}"
        tier_text, symbol_text, _, _, mpid_text, shares_text, trades_text, week_text = cast("Sequence[str]", fields)
        if week_text.strip() != self.week_text:
            return _week_error(week_text, self.week_ending)
        error = self._tier_error(tier_text)
        if error:
            return error
        symbol = symbol_text.strip().upper()
        if not symbol:
            return "blank symbol"
        mpid = mpid_text.strip().upper()
        if not mpid:
            return "blank MPID"
        error = _count_error("totalWeeklyShareQuantity", shares_text) or _count_error(
            "totalWeeklyTradeCount", trades_text
        )
        if error:
            return error
        return symbol, mpid, int(shares_text), int(trades_text)


def _strip(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


@register(NORMALIZE, Stage.NORMALIZED, "Validate raw rows into normalized rows; bad rows go to rejects")
def normalize_week(ctx: RunContext) -> StageResult:
    week_text, tier_text = ctx.week_ending.isoformat(), ctx.tier.value
    validator = RowValidator(ctx.week_ending, ctx.tier)
    good: list[tuple[str | None, ...]] = []
    bad: list[tuple[str | None, ...]] = []
    with ctx.engine.begin() as conn:
        capture = resolve_raw_capture(conn, ctx.week_ending, ctx.tier, ctx.params.get("capture_id"))
        cid = capture.capture_id
        lock_capture(conn, cid)
        prefix = (cid, capture.captured_at.isoformat(), ctx.execution_id, week_text, tier_text)
        rows = conn.execute(
            select(raw.c.line_number, raw.c.record_hash, *RAW_FIELDS)
            # No ORDER BY: every row carries its line number, and sorting is a third of the read.
            .where(raw.c.week_ending == ctx.week_ending, raw.c.tier == tier_text, raw.c.capture_id == cid)
        )
        tier_ok = validator.tier_ok
        for row in rows:
            line_number, record_hash, tier_t, symbol_t, name, participant, mpid_t, shares_t, trades_t, week_t = row
            # Fast path: a clean row (nearly all of them) is decided by a few string tests; anything
            # unusual goes through the full checks, which also say why a row is rejected. A short
            # row lacks its trailing fields, lastUpdateDate first, so the week test also guards
            # every later test against a missing (NULL) field.
            if (
                week_t == week_text
                and tier_ok(tier_t)
                and shares_t.isdigit()
                and shares_t.isascii()
                and len(shares_t) <= SAFE_DIGITS
                and trades_t.isdigit()
                and trades_t.isascii()
                and len(trades_t) <= SAFE_DIGITS
            ):
                symbol, mpid = symbol_t.strip().upper(), mpid_t.strip().upper()
                if symbol and mpid:
                    good.append(
                        (*prefix, str(line_number), record_hash, symbol, name.strip() or None, mpid,
                         participant.strip() or None, shares_t, trades_t)
                    )  # fmt: skip
                    continue
            fields = row[2:]
            verdict = validator.check(fields)
            if isinstance(verdict, str):
                record = json.dumps(dict(zip(HEADER, fields, strict=True)), ensure_ascii=False)
                bad.append((*prefix, Stage.NORMALIZED.value, str(line_number), verdict, record))
                continue
            symbol, mpid, shares, trades = verdict
            good.append(
                (*prefix, str(line_number), record_hash, symbol, _strip(name), mpid, _strip(participant),
                 str(shares), str(trades))
            )  # fmt: skip
        for table, condition in (
            (normalized, normalized.c.capture_id == cid),
            (rejects, (rejects.c.capture_id == cid) & (rejects.c.stage == Stage.NORMALIZED.value)),
        ):
            conn.execute(
                delete(table).where(table.c.week_ending == ctx.week_ending, table.c.tier == tier_text, condition)
            )
        count = copy_rows(conn, normalized, NORMALIZED_COLUMNS, good, progress=ctx.progress)
        copy_rows(conn, rejects, REJECT_COLUMNS, bad)
        upsert_manifest(
            conn,
            stage=Stage.NORMALIZED,
            week_ending=ctx.week_ending,
            tier=ctx.tier,
            row_count=count,
            capture_id=cid,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.NORMALIZED, cid, count, rejected=len(bad))
