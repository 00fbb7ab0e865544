"""``spine db``: schema migrations, and the embedded PostgreSQL's status, stop and reset.

Every ``spine`` command (and ``make demo``) uses ``SPINE_DATABASE_URL`` or, when it is unset, the
embedded server in the per-user data folder, started on first use and left running for the next
command. ``status`` says which and in what state; ``stop`` stops the embedded server (the next
command starts it again); ``reset`` deletes the embedded server's data after asking (``--yes``
for scripts). None of them ever stops or drops a database named by ``SPINE_DATABASE_URL``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from market_spine.cli import context
from market_spine.cli.output import say
from market_spine.db import migrate
from market_spine.errors import UsageError
from market_spine.services import database

app = typer.Typer(help="The database: schema migrations, and the embedded PostgreSQL.", no_args_is_help=True)

EXIT_DECLINED = 1


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


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


@app.command()
def status() -> None:
    """Say where spine keeps its data and whether the server runs; starts nothing."""
    found = database.status(context.settings())
    print(f"database: {found.where}")
    server = found.embedded
    if server is not None:
        if not server.initialised:
            print("server: not created yet (the first spine command creates it)")
            return
        print(f"size: {_megabytes(server.size_bytes)}")
        if not server.running:
            print("server: stopped (the next spine command starts it)")
            return
        print(f"server: running, pid {server.pid}, port {server.port}, socket in {server.socket_dir}")
    if not found.reachable:
        print(f"server: unreachable: {found.error}")
        return
    print(f"schema: revision {found.revision or 'none'} (this spine's newest: {found.head})")


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL (nothing is lost; the next spine command starts it again)."""
    folder, was_running = database.stop(context.settings())
    print(f"stopped the embedded PostgreSQL in {folder}" if was_running else f"not running: {folder}")


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for scripts).")] = False,
) -> None:
    """Delete the embedded PostgreSQL and all its data (work items, captures, results), after asking.

    The next spine command creates an empty one. Never touches SPINE_DATABASE_URL's database."""
    settings = context.settings()
    found = database.status(settings)
    if found.embedded is None:
        database.reset(settings)  # refuses, naming SPINE_DATABASE_URL
        return
    folder = found.embedded.data_dir
    if not found.embedded.initialised:
        print(f"nothing to delete: no embedded PostgreSQL in {folder}")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"spine db reset deletes {folder} and everything in it: pass --yes to confirm")
        size = _megabytes(found.embedded.size_bytes)
        if not typer.confirm(f"Delete the embedded PostgreSQL in {folder} ({size}) and all its data?", default=False):
            say("nothing deleted")
            raise typer.Exit(EXIT_DECLINED)
    database.reset(settings)
    print(f"deleted {folder}; the next spine command starts an empty database")
