"""Rendering rows for people and for programs: every ``spine`` listing goes through :func:`emit`.

The three formats carry the same fields, in the same order, with the same values: JSON a list of
objects, CSV a header row (always, even with no rows) and one line per row, the table one row per
line. Timestamps are ISO 8601 in UTC with microseconds in all three; dates are ISO; JSON keeps
numbers as numbers; the table rounds fractions (shares, HHI) to 6 decimals for reading, where JSON
and CSV keep full precision.

Tables never cut a value. On a terminal, a Rich table is drawn only if every identifier fits whole
on one line (free text such as ``last_error`` may wrap); otherwise each row is printed as a block,
one ``field  value`` per line (empty fields left out), so a name or a command can be copied as is.
When piped, the table is plain aligned text with every value complete, no colour and no box
drawing (fastapi-cli's rule), so ``spine … | grep`` and ``| column`` behave.

Called by ``cli.query``, ``cli.work`` (``work list``), ``cli.doctor`` and the kubectl plugin.
"""

from __future__ import annotations

import csv
import enum
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


# Columns of free text, which may wrap inside a table cell; every other column is an identifier,
# a number or a date, and is shown whole or the row is shown as a block.
FREE_TEXT = frozenset({"last_error", "detail", "reason", "record", "message"})
TABLE_DECIMALS = 6
_UNBOUNDED = 1 << 16  # a width to measure a table's true minimum at (Rich clamps it to the width given)


def is_tty() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    """A console on stdout; ``soft_wrap`` so long lines are left to the terminal, never cut."""
    return Console(soft_wrap=True, highlight=False)


def timestamp(value: datetime) -> str:
    """The one text form of a timestamp: ISO 8601, UTC, microseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def text(value: Any) -> str:
    """A value as CSV writes it (full precision); JSON objects and lists as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | enum.Enum):
        return str(_json_value(value))
    if isinstance(value, dict | list):
        return json.dumps(value, default=_json_value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{TABLE_DECIMALS}f}"
    return text(value)


def emit(
    rows: Sequence[Mapping[str, Any]],
    fmt: Format,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print ``rows`` with exactly ``columns`` (default: the first row's keys) in ``fmt``."""
    cols = list(columns or (rows[0].keys() if rows else []))
    if fmt is Format.JSON:
        print(json.dumps([{c: _json_value(r.get(c)) for c in cols} for r in rows], default=_json_value, indent=2))
    elif fmt is Format.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([text(r.get(c)) for c in cols] for r in rows)
    elif not rows:
        say("no rows")
    elif is_tty():
        print_table([[_cell(r.get(c)) for c in cols] for r in rows], cols, title)
    else:
        print(plain_table([[_cell(r.get(c)) for c in cols] for r in rows], cols), end="")


def plain_table(rows: Sequence[Sequence[str]], cols: Sequence[str]) -> str:
    """Aligned columns under upper-case headers, every value whole (for pipes)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def print_table(rows: Sequence[Sequence[str]], cols: Sequence[str], title: str | None = None) -> None:
    """A Rich table if every identifier fits whole at the terminal's width, else one block per row."""
    out = console()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for index, c in enumerate(cols):
        widest = max([len(c), *(len(r[index]) for r in rows)])
        if c in FREE_TEXT:  # may wrap, but keeps a readable width
            table.add_column(c.upper(), overflow="fold", min_width=min(widest, 16))
        else:  # never narrower than its widest value: the table is drawn whole or not at all
            table.add_column(c.upper(), no_wrap=True, min_width=widest)
    for r in rows:
        table.add_row(*r)
    unbounded = out.options.update(width=_UNBOUNDED)
    if Measurement.get(out, unbounded, table).minimum <= out.width:
        out.print(table, soft_wrap=False)
    else:
        print(records(rows, cols, title), end="")


def records(rows: Sequence[Sequence[str]], cols: Sequence[str], title: str | None = None) -> str:
    """One block per row: the first value as a heading, then a ``field  value`` line per non-empty
    field (psql's ``\\x``)."""
    width = max(len(c) for c in cols[1:]) if len(cols) > 1 else 0
    blocks = []
    for r in rows:
        fields = [f"  {c.ljust(width)}  {v}" for c, v in zip(cols[1:], r[1:], strict=True) if v]
        blocks.append("\n".join([r[0], *fields]))
    head = f"{title} ({len(rows)})\n\n" if title else ""
    return head + "\n\n".join(blocks) + "\n"


def say(message: str) -> None:
    """A status line for people: on stderr, so stdout stays clean for data."""
    print(message, file=sys.stderr)
