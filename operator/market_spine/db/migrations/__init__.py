"""Alembic migrations of the Market Spine schema (run by ``spine db upgrade``)."""
