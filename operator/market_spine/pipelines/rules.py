"""Normalization's rules as SQL: for each raw row of a capture, why it is rejected (or NULL), and
its normalized values.

Called by ``pipelines.normalize``, which runs :meth:`Judge.judged` inside one INSERT … SELECT, so
PostgreSQL judges a week's rows where they are stored. The expressions are SQLAlchemy Core: every
value (the week, the tier's spellings, the calendar) is a bound parameter. Each rule puts the
cheap test for the usual row first (a row carrying the week's publication day is not parsed as a
date, a tier spelt as FINRA spells it is not folded), so a clean week costs a few comparisons per
row; the full checks and the messages are only computed for the rows that need them.

Messages quote a value in single quotes (``'Dec 15'``), shortened to its first :data:`QUOTE_CHARS`
characters and its length when longer (a quantity of thousands of digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Integer,
    Text,
    all_,
    and_,
    any_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from market_spine.core.partitions import FINRA_TIER_IDS, Tier, tier_aliases
from market_spine.db.schema import raw
from market_spine.finra.api import ATS_VENUE_ROWS
from market_spine.finra.files import HEADER, WHITESPACE
from market_spine.finra.sample import TIER_DESCRIPTIONS

# How far back a row published before its week is traced to the week it belongs to.
CALENDAR_YEARS = 10
QUOTE_CHARS = 40
BIGINT_MAX = str(2**63 - 1)
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
# The API's fields that normalize checks; in a reject's record when the row has them.
API_CHECKED = ((raw.c.week_start_date, "weekStartDate"), (raw.c.summary_type_code, "summaryTypeCode"))

Expr = ColumnElement[Any]
Rule = tuple[Any, Any]  # (condition, reason): the SQL CASE branch that rejects a row


def _text(expression: object) -> ColumnElement[str]:
    return type_coerce(expression, Text)


def concat(*parts: object) -> ColumnElement[str]:
    """SQL ``concat`` (NULL parts count as empty)."""
    return _text(func.concat(*parts))


def quoted(value: ColumnElement[str]) -> ColumnElement[str]:
    """``value`` in single quotes, backslashes and quotes escaped (``'Dec 15'``, as Python's
    ``repr`` shows most values), cut to :data:`QUOTE_CHARS` characters with its length when longer."""
    size = func.char_length(value)
    escaped = func.replace(func.replace(func.left(value, QUOTE_CHARS), "\\", "\\\\"), "'", "\\'")
    more = case(
        (size > QUOTE_CHARS, concat("…' (", func.to_char(size, "FM999,999,999,999"), " characters)")), else_="'"
    )
    return concat("'", escaped, more)


class Judge:
    """The rules for one partition: its week, tier and publication day, and ``calendar``: (week,
    first publication) of the earlier weeks a row's ``lastUpdateDate`` may point at, oldest first."""

    def __init__(self, week: date, tier: Tier, published: date, calendar: Sequence[tuple[date, date]]) -> None:
        self.week = week
        self.tier = tier
        self.published = published
        self.calendar = calendar
        self.ws = bindparam("whitespace", WHITESPACE, type_=Text)

    def trim(self, value: ColumnElement[str]) -> ColumnElement[str]:
        return _text(func.btrim(value, self.ws))

    # --- the rules, each a list of (condition, reason) in order ----------------------------------

    def _malformed(self) -> list[Rule]:
        # Fields are filled from the left: a short row lacks lastUpdateDate first.
        missing = func.concat_ws(
            ", ", *(case((field.is_(None), name)) for field, name in zip(RAW_FIELDS, HEADER, strict=True))
        )
        present = func.num_nonnulls(*RAW_FIELDS)
        message = concat("malformed row: ", present, f" of {len(HEADER)} pipe-delimited fields; missing ", missing)
        return [(raw.c.last_update_date.is_(None), message)]

    def _date(self) -> list[Rule]:
        value = raw.c.last_update_date
        day = self.trim(value)
        iso = day.regexp_match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        year, month, dom = (
            cast(func.substr(day, start, length), Integer) for start, length in ((1, 4), (6, 2), (9, 2))
        )
        leap = and_(year % 4 == 0, or_(year % 100 != 0, year % 400 == 0))
        month_days = case((month == 2, case((leap, 29), else_=28)), (month.in_((4, 6, 9, 11)), 30), else_=31)
        # Nested CASEs, not ANDs: PostgreSQL evaluates CASE branches in order, so the casts and
        # make_date only ever see text that has the shape of a date.
        is_date = case(
            (~iso, false()), (or_(year < 1, month < 1, month > 12), false()), else_=and_(dom >= 1, dom <= month_days)
        )
        as_date = func.make_date(year, month, dom)
        weeks = bindparam("calendar_weeks", [w for w, _ in self.calendar], type_=ARRAY(Date))
        firsts = bindparam("calendar_firsts", [f for _, f in self.calendar], type_=ARRAY(Date))
        known = func.unnest(weeks, firsts).table_valued("cal_week", "cal_first").render_derived(name="calendar")
        fits = select(func.max(known.c.cal_week)).where(known.c.cal_first <= as_date).scalar_subquery()
        belongs = func.coalesce(
            literal("week ").concat(_text(func.to_char(fits, "YYYY-MM-DD"))),
            f"a week more than {CALENDAR_YEARS} years earlier",
        )
        early = concat(
            "published on ",
            day,
            f" (lastUpdateDate), before week {self.week.isoformat()}'s first publication "
            f"({self.published.isoformat()}): the row is for ",
            belongs,
        )
        other_day = value != self.published.isoformat()  # the usual row carries the publication day
        return [
            (and_(other_day, ~is_date), concat("lastUpdateDate is not a date: ", quoted(value))),
            (and_(other_day, as_date < self.published), early),
        ]

    def _api(self) -> list[Rule]:
        week = self.week.isoformat()
        start = self.trim(raw.c.week_start_date)
        kind = self.trim(raw.c.summary_type_code)
        return [
            (
                and_(raw.c.week_start_date.is_not(None), start != "", start != week),
                concat("row is for week ", start, f" (weekStartDate), not {week}"),
            ),
            (
                and_(raw.c.summary_type_code.is_not(None), kind != "", kind != ATS_VENUE_ROWS),
                concat("not an ATS venue row: summaryTypeCode ", quoted(kind), f", expected {ATS_VENUE_ROWS}"),
            ),
        ]

    def _tier(self) -> list[Rule]:
        value = raw.c.tier_description
        spelt = self._spelt()
        # Letters and digits of the ASCII alphabet, lower case: "NMS Tier 1" → "nmstier1".
        ascii_only = func.octet_length(value) == func.char_length(value)
        folded = case((ascii_only, func.regexp_replace(func.lower(value), "[^a-z0-9]+", "", "g")), else_="")

        def aliases(tier: Tier) -> ColumnElement[object]:
            return bindparam(f"aliases_{tier.name.lower()}", sorted(tier_aliases(tier)), type_=ARRAY(Text))

        other = [
            (folded == any_(aliases(tier)), f"row is for tier {tier.value}, not {self.tier.value}")
            for tier in Tier
            if tier is not self.tier
        ]
        reason = case(*other, else_=concat("unknown tier ", quoted(value)))
        not_this = and_(
            value != all_(bindparam("tier_spelt", spelt, type_=ARRAY(Text))), folded != all_(aliases(self.tier))
        )
        return [(not_this, reason)]

    def _names(self) -> list[Rule]:
        return [
            (self.trim(raw.c.issue_symbol_identifier) == "", literal("blank symbol")),
            (self.trim(raw.c.mpid) == "", literal("blank MPID")),
        ]

    def _count(self, value: ColumnElement[str], name: str) -> list[Rule]:
        text = self.trim(value)
        digits = and_(text != "", func.ltrim(text, "0123456789") == "")
        significant = func.ltrim(text, "0")
        fits = or_(
            func.length(significant) < len(BIGINT_MAX),
            and_(func.length(significant) == len(BIGINT_MAX), significant.collate("C") <= BIGINT_MAX),
        )
        return [
            (~digits, concat(f"{name} is not a non-negative integer: ", quoted(value))),
            (~fits, concat(f"{name} is out of range: ", quoted(value))),
        ]

    def _clean(self) -> ColumnElement[bool]:
        """A sufficient test that a row breaks no rule, cheap enough for every row (no regular
        expression, no parsing): a file row (no API fields, no defect) that carries the week's
        publication day and a tier spelt as FINRA spells it, whose symbol and MPID start with a
        printable character and whose numbers are 1 to 18 plain digits (so they fit a BIGINT).
        Any other row takes the full checks."""
        spelt = bindparam("tier_spelt", self._spelt(), type_=ARRAY(Text))

        def digits(value: ColumnElement[str]) -> ColumnElement[bool]:
            return and_(func.length(value).between(1, len(BIGINT_MAX) - 1), func.ltrim(value, "0123456789") == "")

        return and_(
            raw.c.defect.is_(None),
            raw.c.last_update_date == self.published.isoformat(),
            raw.c.week_start_date.is_(None),
            raw.c.summary_type_code.is_(None),
            raw.c.tier_description == any_(spelt),
            func.ascii(raw.c.issue_symbol_identifier) > 32,  # ascii('') is 0; 32 is a space
            func.ascii(raw.c.mpid) > 32,
            digits(raw.c.total_weekly_share_quantity),
            digits(raw.c.total_weekly_trade_count),
        )

    def _spelt(self) -> list[str]:
        """The tier's spellings in FINRA's files and ours, compared as they are (no folding)."""
        return [self.tier.value, FINRA_TIER_IDS[self.tier], TIER_DESCRIPTIONS[self.tier]]

    def reason(self) -> ColumnElement[str]:
        """Why the raw row is rejected, first failure wins; NULL for a good row."""
        rules = [
            (raw.c.defect.is_not(None), raw.c.defect),
            *self._malformed(),
            *self._date(),
            *self._api(),
            *self._tier(),
            *self._names(),
            *self._count(raw.c.total_weekly_share_quantity, "totalWeeklyShareQuantity"),
            *self._count(raw.c.total_weekly_trade_count, "totalWeeklyTradeCount"),
        ]
        return _text(case((self._clean(), None), else_=case(*rules, else_=None)))

    def partition(self, capture_id: str) -> ColumnElement[bool]:
        return and_(raw.c.week == self.week, raw.c.tier == self.tier.value, raw.c.capture_id == capture_id)

    def values(self) -> list[ColumnElement[Any]]:
        """A kept raw row's normalized values: symbol, issue name, MPID, participant name, share
        quantity, trade count (only ever computed for rows the rules keep: a rejected row's number
        may be no number at all)."""
        return [
            self.trim(raw.c.issue_symbol_identifier),
            func.nullif(self.trim(raw.c.issue_name), ""),
            func.upper(self.trim(raw.c.mpid)),
            func.nullif(self.trim(raw.c.market_participant_name), ""),
            cast(self.trim(raw.c.total_weekly_share_quantity), BigInteger),
            cast(self.trim(raw.c.total_weekly_trade_count), BigInteger),
        ]


# What makes a row an exact duplicate of another: the venue row's identity and its numbers.
DUPLICATE_KEY = ("symbol", "mpid", "share_quantity", "trade_count")


def record() -> ColumnElement[Any]:
    """A raw row as received, keyed by FINRA's field names, with the checked API fields it has:
    a reject's ``record``."""
    body = func.jsonb_build_object(
        *(part for field, name in zip(RAW_FIELDS, HEADER, strict=True) for part in (name, field))
    )
    extra = (part for field, name in API_CHECKED for part in (name, func.nullif(field, "")))
    return type_coerce(body.op("||")(func.jsonb_strip_nulls(func.jsonb_build_object(*extra))), JSONB)
