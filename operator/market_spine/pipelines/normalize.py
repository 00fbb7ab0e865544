"""``finra.otc_transparency.normalize_week``: validate one capture's raw rows into normalized rows
or rejects with a reason (stage NORMALIZED).

Called through the registry by ``services.runs``. Reads the capture named by
``ctx.params["capture_id"]``, else the partition's latest RAW capture. The capture's raw rows are
read as COPY text and the normalized rows written as COPY text, so a clean row goes from one to
the other with a few string operations; the rules below are :class:`RowValidator`'s. Every raw row ends up in
exactly one of ``normalized`` and ``rejects`` (normalized + rejects = raw): nothing is dropped
silently, and a bad row never aborts the batch. Rules, first failure wins:

- the row has all of FINRA's fields;
- ``lastUpdateDate`` (the day FINRA published or corrected the row) is a date on or after the
  week's first publication: a row published earlier describes an earlier week and is never mixed
  in (a later date is a correction, and fine);
- for rows from FINRA's API, ``weekStartDate`` is the partition's week and ``summaryTypeCode`` is
  ``ATS_W_SMBL_FIRM`` (an ATS venue row: non-ATS firms and totals never enter venue shares);
- ``tierDescription`` is a known tier alias and is the partition's tier;
- symbol and MPID are non-blank once stripped; the symbol is kept as published (in FINRA's
  symbology a lower-case suffix can be another security), the MPID is upper-cased;
- share quantity and trade count are non-negative integers (plain digits: "1,234" is rejected,
  because FINRA never writes it and guessing a thousands separator could invent volume).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date
from typing import cast

from psycopg import sql

from market_spine.core.calendar import PublicationCalendar
from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.core.stages import NORMALIZE, Stage
from market_spine.db.schema import normalized, raw, rejects
from market_spine.finra.api import ATS_VENUE_ROWS
from market_spine.finra.files import HEADER
from market_spine.finra.schedule import finra_calendar
from market_spine.pipelines.copy import copy_out_query, copy_rows, copy_text, escape, unescape, where_clause
from market_spine.pipelines.manifest import Replaced, open_capture, upsert_manifest
from market_spine.pipelines.registry import RunContext, StageResult, register

NORMALIZED_COLUMNS: tuple[str, ...] = (
    "capture_id",
    "captured_at",
    "execution_id",
    "week",
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
    "week",
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
# The API's fields that normalize checks, read as '' when absent (a file's rows): text without a
# NULL keeps the fast path open for them.
API_CHECKED = ((raw.c.week_start_date, "weekStartDate"), (raw.c.summary_type_code, "summaryTypeCode"))
WIDTH = len(RAW_READ_COLUMNS) + len(API_CHECKED)
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


class RowValidator:
    """Judges raw rows of one partition; remembers tier spellings and publication dates it has
    already judged (a week has one or two of each)."""

    def __init__(self, week: date, tier: Tier, calendar: PublicationCalendar) -> None:
        self.week = week
        self.week_text = week.isoformat()
        self.tier = tier
        self.calendar = calendar
        self.published = calendar.first_publication(week, tier)
        self._tiers: dict[str, Tier | None] = {}
        self._ok: dict[str | None, bool] = {}
        self._dates: dict[str, str | None] = {}

    def date_error(self, value: str) -> str | None:
        """Why ``lastUpdateDate`` cannot be this week's (cached per value), or ``None``."""
        if value not in self._dates:
            self._dates[value] = self._judge_date(value)
        return self._dates[value]

    def _judge_date(self, value: str) -> str | None:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            return f"lastUpdateDate is not a date: {value!r}"
        if day >= self.published:
            return None
        fits = self.calendar.newest_published_week(self.tier, day)
        return (
            f"published on {day.isoformat()} (lastUpdateDate), before week {self.week_text}'s first "
            f"publication ({self.published.isoformat()}): the row is for week {fits.isoformat()}"
        )

    def api_error(self, week_start: str, summary_type: str) -> str | None:
        """Why an API row's ``weekStartDate`` or ``summaryTypeCode`` rule it out ('' = absent)."""
        if week_start and week_start.strip() != self.week_text:
            return f"row is for week {week_start.strip()} (weekStartDate), not {self.week_text}"
        if summary_type and summary_type.strip() != ATS_VENUE_ROWS:
            return f"not an ATS venue row: summaryTypeCode {summary_type.strip()!r}, expected {ATS_VENUE_ROWS}"
        return None

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

    def check(
        self, fields: Sequence[str | None], week_start: str = "", summary_type: str = ""
    ) -> tuple[str, str, int, int] | str:
        """(symbol, mpid, shares, trades) for a good row, else the reason it is rejected."""
        missing = [name for name, value in zip(HEADER, fields, strict=True) if value is None]
        if missing:
            present = len(HEADER) - len(missing)
            return f"malformed row: {present} of {len(HEADER)} pipe-delimited fields; missing {', '.join(missing)}"
        tier_text, symbol_text, _, _, mpid_text, shares_text, trades_text, date_text = cast("Sequence[str]", fields)
        error = self.date_error(date_text) or self.api_error(week_start, summary_type) or self._tier_error(tier_text)
        if error:
            return error
        symbol = symbol_text.strip()
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
        self.week_text = ctx.week.isoformat()
        self.validator = RowValidator(ctx.week, ctx.tier, finra_calendar())
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
        date_error = self.validator.date_error
        out: list[str] = []
        append = out.append
        for row in rows:
            (line_number, record_hash, tier_t, symbol_t, name, participant, mpid_t, shares_t, trades_t, date_t,
             start_t, kind_t) = row  # fmt: skip
            # Fast path: a clean row (nearly all of them) is decided by a few string tests and
            # written from its fields as read (they need no escaping: the text has no backslash);
            # anything unusual, or any row holding an escape or a NULL (\N), goes through the full
            # checks on its decoded values, which also say why a row is rejected.
            if (
                date_error(date_t) is None
                and (not start_t or start_t == week_text)
                and (not kind_t or kind_t == ATS_VENUE_ROWS)
                and tier_ok(tier_t)
                and shares_t.isdigit()
                and shares_t.isascii()
                and len(shares_t) <= SAFE_DIGITS
                and trades_t.isdigit()
                and trades_t.isascii()
                and len(trades_t) <= SAFE_DIGITS
                and not (escaped and "\\" in "".join(row))
            ):
                symbol, mpid = symbol_t.strip(), mpid_t.strip().upper()
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
        fields = [unescape(value) for value in row[2 : 2 + len(HEADER)]]
        api = [unescape(value) or "" for value in row[2 + len(HEADER) :]]
        verdict = self.validator.check(fields, *api)
        if isinstance(verdict, str):
            received = dict(zip(HEADER, fields, strict=True))
            received |= {name: value for (_, name), value in zip(API_CHECKED, api, strict=True) if value}
            record = json.dumps(received, ensure_ascii=False)
            self.rejects.append((*self.prefix, Stage.NORMALIZED.value, line_number, verdict, record))
            return None
        symbol, mpid, shares, trades = verdict
        _, _, name, participant, *_ = fields
        values = "\t".join(map(_text, (symbol, _strip(name), mpid, _strip(participant))))
        return f"{self.line_prefix}{line_number}\t{record_hash}\t{values}\t{shares}\t{trades}\n"


def _read_statement(partition: dict[str, object]) -> sql.Composed:
    """The capture's raw rows to judge: :data:`RAW_READ_COLUMNS`, then :data:`API_CHECKED` with
    NULL (a file's rows) read as ''."""
    return sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in RAW_READ_COLUMNS),
        sql.SQL(", ").join(sql.SQL("COALESCE({}, '')").format(sql.Identifier(c.name)) for c, _ in API_CHECKED),
        sql.Identifier(raw.name),
        where_clause(raw, partition),
    )


@register(NORMALIZE, Stage.NORMALIZED, "Validate raw rows into normalized rows; bad rows go to rejects")
def normalize_week(ctx: RunContext) -> StageResult:
    tier_text = ctx.tier.value
    with ctx.engine.begin() as conn:
        replaced: list[Replaced] = [(normalized, {}), (rejects, {"stage": Stage.NORMALIZED.value})]
        capture = open_capture(conn, ctx.week, ctx.tier, ctx.params.get("capture_id"), replaced)
        cid = capture.capture_id
        prefix = (cid, capture.captured_at.isoformat(), ctx.execution_id, ctx.week.isoformat(), tier_text)
        # No ORDER BY: every row carries its line number, and sorting is a third of the read.
        partition = {"week": ctx.week, "tier": tier_text, "capture_id": cid}
        text = copy_out_query(conn, _read_statement(partition))
        normalizer = _Normalizer(ctx, prefix)
        count = copy_text(conn, normalized, NORMALIZED_COLUMNS, normalizer.chunks(text), progress=ctx.progress)
        if normalizer.rejects:
            copy_rows(conn, rejects, REJECT_COLUMNS, normalizer.rejects)
        upsert_manifest(
            conn,
            stage=Stage.NORMALIZED,
            week=ctx.week,
            tier=ctx.tier,
            row_count=count,
            capture_id=cid,
            execution_id=ctx.execution_id,
            updated_at=ctx.now,
        )
    return StageResult(Stage.NORMALIZED, cid, count, rejected=len(normalizer.rejects))
