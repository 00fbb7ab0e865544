"""Opening the database for a command: URL resolution, reachability, and the schema version check;
and the embedded server's status, stop and reset (``spine db status|stop|reset``).

Called once per process by the CLI (and the pipeline container, which is the CLI) and the demo. With no
``SPINE_DATABASE_URL`` the embedded PostgreSQL is started and migrated automatically, so a fresh
machine needs no setup; an external database must be migrated explicitly with ``spine db upgrade``
(often by the Helm pre-install hook), and a command refuses to run against an older schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from market_spine.config import Settings
from market_spine.db import embedded, migrate
from market_spine.db.engine import (
    EMBEDDED_DATABASE,
    check_connection,
    default_data_dir,
    describe,
    make_engine,
    normalize_url,
    resolve_url,
)
from market_spine.errors import DatabaseUnavailable, SchemaMismatch, UsageError


def open_engine(settings: Settings, *, require_schema: bool = True) -> Engine:
    embedded = not settings.database_url
    url = resolve_url(settings.database_url, settings.data_dir)
    engine = make_engine(url, connect_timeout=settings.db_connect_timeout)
    check_connection(engine)
    if embedded:
        migrate.upgrade(engine)
    elif require_schema:
        current, head = migrate.current_revision(engine), migrate.head_revision()
        if current != head:
            engine.dispose()
            if current is not None and not migrate.is_known_revision(current):
                raise SchemaMismatch(
                    f"the database schema is at revision {current}, newer than this spine knows ({head}): "
                    "upgrade spine (the image) to match the database"
                )
            raise SchemaMismatch(
                f"the database schema is at revision {current or 'none'}, this spine needs {head}: "
                "run `spine db upgrade`"
            )
    return engine


def upgrade(settings: Settings) -> tuple[str | None, str | None]:
    engine = open_engine(settings, require_schema=False)
    try:
        current = migrate.current_revision(engine)
        if current is not None and not migrate.is_known_revision(current):
            raise SchemaMismatch(
                f"the database schema is at revision {current}, newer than this spine knows "
                f"({migrate.head_revision()}): nothing to upgrade; use a spine that matches the database"
            )
        return migrate.upgrade(engine)
    finally:
        engine.dispose()


# --- the embedded server: `spine db status|stop|reset` ------------------------------------------


@dataclass(frozen=True)
class DatabaseStatus:
    """Where ``spine`` keeps its data and what state it is in, for ``spine db status``."""

    where: str  # "embedded PostgreSQL in DIR", or the URL's host and database (never a password)
    embedded: embedded.EmbeddedServer | None
    reachable: bool
    revision: str | None
    head: str | None
    error: str | None = None


def data_dir(settings: Settings) -> Path:
    return settings.data_dir or default_data_dir()


def _refuse_external(settings: Settings, action: str) -> None:
    if settings.database_url:
        where = describe(normalize_url(settings.database_url))
        raise UsageError(
            f"spine db {action} manages only the embedded PostgreSQL, and SPINE_DATABASE_URL is set ({where}); "
            "spine never stops or drops a database it did not create"
        )


def status(settings: Settings) -> DatabaseStatus:
    """Inspect the database without starting anything (the embedded server stays as it is)."""
    head = migrate.head_revision()
    if settings.database_url:
        url, server = normalize_url(settings.database_url), None
        where = f"SPINE_DATABASE_URL: {describe(url)}"
    else:
        server = embedded.inspect(data_dir(settings))
        where = f"embedded PostgreSQL in {server.data_dir}"
        if not server.running:
            return DatabaseStatus(where, server, reachable=False, revision=None, head=head)
        url = normalize_url(
            f"postgresql://postgres@/{EMBEDDED_DATABASE}?host={server.socket_dir or '/tmp'}&port={server.port}"
        )
    engine = make_engine(url, connect_timeout=settings.db_connect_timeout)
    try:
        check_connection(engine)
        revision = migrate.current_revision(engine)
    except DatabaseUnavailable as exc:
        return DatabaseStatus(where, server, reachable=False, revision=None, head=head, error=str(exc))
    finally:
        engine.dispose()
    return DatabaseStatus(where, server, reachable=True, revision=revision, head=head)


def stop(settings: Settings) -> tuple[Path, bool]:
    """Stop the embedded server; (its data directory, whether it was running)."""
    _refuse_external(settings, "stop")
    folder = data_dir(settings)
    return folder, embedded.stop(folder)


def reset(settings: Settings) -> Path:
    """Stop the embedded server and delete its data directory (the caller has asked the user)."""
    _refuse_external(settings, "reset")
    folder = data_dir(settings)
    embedded.delete(folder)
    return folder
