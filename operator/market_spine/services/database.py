"""Opening the database for a command: URL resolution, reachability, and the schema version check.

Called once per process by the CLI (and the pipeline container, which is the CLI). With no
``SPINE_DATABASE_URL`` the embedded PostgreSQL is started and migrated automatically, so a fresh
machine needs no setup; an external database must be migrated explicitly with ``spine db upgrade``
(often by the Helm pre-install hook), and a command refuses to run against an older schema.
"""

from __future__ import annotations

from sqlalchemy import Engine

from market_spine.config import Settings
from market_spine.db import migrate
from market_spine.db.engine import check_connection, make_engine, resolve_url
from market_spine.errors import SchemaMismatch


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
