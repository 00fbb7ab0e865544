"""``spine db``: schema migrations."""

from __future__ import annotations

import typer

from market_spine.cli import context
from market_spine.db import migrate
from market_spine.services import database

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Migrate the database to the newest schema. Safe to run again: at head it does nothing."""
    before, after = database.upgrade(context.settings())
    if before == after:
        print(f"database already at revision {after}")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")


@app.command()
def current() -> None:
    """Print the schema revision of the database and the newest one this spine knows."""
    engine = database.open_engine(context.settings(), require_schema=False)
    print(f"current: {migrate.current_revision(engine) or 'none'}  head: {migrate.head_revision()}")
