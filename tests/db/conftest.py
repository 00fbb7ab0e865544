"""Fixtures of the database suite: an engine on an empty database (no schema), for migration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from market_spine.db.engine import make_engine


@pytest.fixture
def empty_engine(blank_database_url: str) -> Iterator[Engine]:
    engine = make_engine(blank_database_url)
    yield engine
    engine.dispose()
