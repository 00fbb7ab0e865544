"""Bulk loads with PostgreSQL ``COPY … FROM STDIN`` inside the caller's SQLAlchemy transaction,
and the small statements the stages send through psycopg directly.

Called by ingest (the raw rows, the capture's row) and by ``pipelines.manifest`` (deletes of a
capture's previous rows). COPY runs on the psycopg 3 connection underneath the SQLAlchemy
connection (``conn.connection.driver_connection``), so the load commits or rolls back together with
the stage's deletes and its manifest upsert: a failed stage leaves nothing partial behind.

The statement is built from the :class:`~sqlalchemy.Table` and its column names with
``psycopg.sql.Identifier``, never from values; values travel in COPY's text format, escaped by
psycopg's ``write_row`` (:func:`copy_rows`) or by :func:`escape` for callers that format whole
lines themselves (:func:`copy_text`, the fast path for raw lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import LibpqWriter
from sqlalchemy import Connection, Table

# How often (in rows) a long load reports progress: often enough for a progress bar, rarely
# enough that the callback never shows up in a profile.
PROGRESS_EVERY = 5_000


def driver_connection(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg 3 connection under a SQLAlchemy connection (same session, same transaction)."""
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(raw).__name__}")
    return raw


def escape(value: str) -> str:
    """A value in COPY's text format: backslash, tab, newline and carriage return escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def needs_escape(text: str) -> bool:
    """Whether any value cut out of ``text`` could need :func:`escape` (newlines split lines)."""
    return "\\" in text or "\t" in text or "\r" in text


def _checked(table: Table, columns: Sequence[str]) -> None:
    unknown = [name for name in columns if name not in table.columns]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")


def copy_statement(table: Table, columns: Sequence[str]) -> sql.Composed:
    _checked(table, columns)
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )


def where_clause(table: Table, where: Mapping[str, object]) -> sql.Composed:
    """``name = value AND …``; values are bound as literals by psycopg (``sql.Literal``: quoted
    and typed by the driver, never pasted as text). COPY takes no parameters, hence literals."""
    _checked(table, list(where))
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Literal(value)) for name, value in where.items()
    )


def delete_statement(table: Table, where: Mapping[str, object]) -> sql.Composed:
    """``DELETE FROM table WHERE name = value AND …`` (see :func:`where_clause`)."""
    return sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table.name), where_clause(table, where))


def copy_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """COPY ``rows`` (one value per column, ``None`` for NULL) into ``table``; return the row count.

    Values are whatever psycopg can adapt; pre-formatted strings are the fastest (a ``datetime``
    costs a Python-level dump per row, a string is copied as is and parsed by the server)."""
    count = 0
    with driver_connection(conn).cursor() as cursor, cursor.copy(copy_statement(table, columns)) as copy:
        write = copy.write_row
        if progress is None:
            for row in rows:
                write(row)
                count += 1
        else:
            for row in rows:
                write(row)
                count += 1
                if count % PROGRESS_EVERY == 0:
                    progress(count)
    if progress is not None:
        progress(count)
    return count


def copy_text(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    chunks: Iterable[tuple[int, str]],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """COPY pre-formatted text: each chunk is (rows in it, its lines in COPY text format, each
    ending in a newline, values escaped with :func:`escape`). Return the row count.

    Sending a chunk while the next one is formatted lets PostgreSQL parse and index on one core
    while Python formats on another. That needs each chunk on the wire when written: psycopg's
    default writer keeps up to 1 MB in libpq's buffer (a whole week), so this one flushes every
    chunk (``flush_threshold=0``); chunks of a few hundred rows fit the socket buffer, so the
    flush rarely waits."""
    count = 0
    with (
        driver_connection(conn).cursor() as cursor,
        cursor.copy(copy_statement(table, columns), writer=LibpqWriter(cursor, flush_threshold=0)) as copy,
    ):
        for rows, text in chunks:
            copy.write(text)
            count += rows
            if progress is not None:
                progress(count)
    return count
