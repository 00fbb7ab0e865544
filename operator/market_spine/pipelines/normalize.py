"""``finra.otc_transparency.normalize_week``: validate one capture's raw rows into normalized rows
or rejects with a reason (stage NORMALIZED).

Called through the registry by ``services.runs``. Reads the capture named by
``ctx.params["capture_id"]``, else the partition's latest RAW capture. The capture's raw rows are
read as COPY text and the normalized rows written as COPY text, so a clean row goes from one to
the other with a few string operations; the rules below are :class:`RowValidator`'s. Every raw row ends up in
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
from collections.abc import Iterator, Sequence
from datetime import date
from typing import cast

from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.core.stages import NORMALIZE, Stage
from market_spine.db.schema import normalized, raw, rejects
from market_spine.finra.files import HEADER
from market_spine.pipelines.copy import copy_out, copy_rows, copy_text, escape, unescape
from market_spine.pipelines.manifest import Replaced, open_capture, upsert_manifest
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
RAW_READ_COLUMNS: tuple[str, ...] = ("line_number", "record_hash", *(column.name for column in RAW_FIELDS))
WIDTH = len(RAW_READ_COLUMNS)
BIGINT_MAX = 2**63 - 1
SAFE_DIGITS = 18  # any number of at most 18 digits fits a BIGINT: no range check needed
CHUNK_ROWS = 250  # rows per COPY chunk (~70 kB): PostgreSQL stores one while the next is judged
NULL = "\\N"


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


def _text(value: str | None) -> str:
    return NULL if value is None else escape(value)


class _Normalizer:
    """One capture's raw rows (as :func:`copy_out` text) → normalized COPY lines and reject rows."""

    def __init__(self, ctx: RunContext, prefix: tuple[str, ...]) -> None:
        self.week_text = ctx.week_ending.isoformat()
        self.validator = RowValidator(ctx.week_ending, ctx.tier)
        self.prefix = prefix
        self.line_prefix = "".join(f"{_text(value)}\t" for value in prefix)
        self.rejects: list[tuple[str | None, ...]] = []

    def chunks(self, text: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, str]]:
        """The normalized rows in COPY text format, ``chunk_rows`` raw rows at a time (a chunk
        is sent while the next is judged); rejects are collected in :attr:`rejects`."""
        # Tabs and newlines inside values are escaped, so one split cuts every row into its fields.
        fields = text.replace("\n", "\t").split("\t")
        fields.pop()  # after the last newline
        rows = list(zip(*[iter(fields)] * WIDTH, strict=True))
        escaped = "\\" in text  # else no value is NULL or needs (un)escaping: fields are values
        for start in range(0, len(rows), chunk_rows):
            lines = self._lines(rows[start : start + chunk_rows], escaped)
            yield len(lines), "".join(lines)

    def _lines(self, rows: Sequence[tuple[str, ...]], escaped: bool) -> list[str]:
        week_text, prefix, tier_ok = self.week_text, self.line_prefix, self.validator.tier_ok
        out: list[str] = []
        append = out.append
        for row in rows:
            line_number, record_hash, tier_t, symbol_t, name, participant, mpid_t, shares_t, trades_t, week_t = row
            # Fast path: a clean row (nearly all of them) is decided by a few string tests and
            # written from its fields as read (they need no escaping: the text has no backslash);
            # anything unusual, or any row holding an escape or a NULL (\N), goes through the full
            # checks on its decoded values, which also say why a row is rejected.
            if (
                week_t == week_text
                and tier_ok(tier_t)
                and shares_t.isdigit()
                and shares_t.isascii()
                and len(shares_t) <= SAFE_DIGITS
                and trades_t.isdigit()
                and trades_t.isascii()
                and len(trades_t) <= SAFE_DIGITS
                and not (escaped and "\\" in "".join(row))
            ):
                symbol, mpid = symbol_t.strip().upper(), mpid_t.strip().upper()
                if symbol and mpid:
                    append(
                        f"{prefix}{line_number}\t{record_hash}\t{symbol}\t{name.strip() or NULL}\t{mpid}\t"
                        f"{participant.strip() or NULL}\t{shares_t}\t{trades_t}\n"
                    )
                    continue
            line = self._slow(row)
            if line is not None:
                append(line)
        return out

    def _slow(self, row: tuple[str, ...]) -> str | None:
        """The full checks: a normalized line for a good row, else ``None`` and a reject."""
        line_number, record_hash = row[0], row[1]
        fields = [unescape(value) for value in row[2:]]
        verdict = self.validator.check(fields)
        if isinstance(verdict, str):
            record = json.dumps(dict(zip(HEADER, fields, strict=True)), ensure_ascii=False)
            self.rejects.append((*self.prefix, Stage.NORMALIZED.value, line_number, verdict, record))
            return None
        symbol, mpid, shares, trades = verdict
        _, _, name, participant, *_ = fields
        values = "\t".join(map(_text, (symbol, _strip(name), mpid, _strip(participant))))
        return f"{self.line_prefix}{line_number}\t{record_hash}\t{values}\t{shares}\t{trades}\n"


@register(NORMALIZE, Stage.NORMALIZED, "Validate raw rows into normalized rows; bad rows go to rejects")
def normalize_week(ctx: RunContext) -> StageResult:
    tier_text = ctx.tier.value
    with ctx.engine.begin() as conn:
        replaced: list[Replaced] = [(normalized, {}), (rejects, {"stage": Stage.NORMALIZED.value})]
        capture = open_capture(conn, ctx.week_ending, ctx.tier, ctx.params.get("capture_id"), replaced)
        cid = capture.capture_id
        prefix = (cid, capture.captured_at.isoformat(), ctx.execution_id, ctx.week_ending.isoformat(), tier_text)
        # No ORDER BY: every row carries its line number, and sorting is a third of the read.
        partition = {"week_ending": ctx.week_ending, "tier": tier_text, "capture_id": cid}
        text = copy_out(conn, raw, RAW_READ_COLUMNS, partition)
        normalizer = _Normalizer(ctx, prefix)
        count = copy_text(conn, normalized, NORMALIZED_COLUMNS, normalizer.chunks(text), progress=ctx.progress)
        if normalizer.rejects:
            copy_rows(conn, rejects, REJECT_COLUMNS, normalizer.rejects)
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
    return StageResult(Stage.NORMALIZED, cid, count, rejected=len(normalizer.rejects))
