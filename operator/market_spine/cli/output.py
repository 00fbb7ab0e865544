"""Rendering rows for people and for programs.

On a terminal, tables are Rich tables; when piped, they are plain aligned text with no colour or
box drawing (fastapi-cli's rule), so ``spine … | grep`` and ``| column`` behave. JSON is a list of
objects with the database's field names; CSV has a header row.
"""

from __future__ import annotations

import csv
import enum
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def is_tty() -> bool:
    return sys.stdout.isatty()


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def emit(
    rows: Sequence[Mapping[str, Any]],
    fmt: Format,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    cols = list(columns or (rows[0].keys() if rows else []))
    if not rows and fmt is Format.TABLE:
        say("no rows")
        return
    if fmt is Format.JSON:
        print(json.dumps([dict(r) for r in rows], default=_json_default, indent=2))
    elif fmt is Format.CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _plain(row.get(c)) for c in cols})
    elif is_tty():
        table = Table(title=title, show_lines=False)
        for c in cols:
            table.add_column(c)
        for row in rows:
            table.add_row(*(_plain(row.get(c)) for c in cols))
        Console().print(table)
    else:
        text_rows = [[_plain(row.get(c)) for c in cols] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in text_rows)]) for i, c in enumerate(cols)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
        for r in text_rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def say(message: str) -> None:
    """A status line for people: on stderr, so stdout stays clean for data."""
    print(message, file=sys.stderr)
