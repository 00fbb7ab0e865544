"""Alembic environment: runs revisions on the connection handed over by :mod:`market_spine.db.migrate`."""

from __future__ import annotations

from alembic import context

from market_spine.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
