"""A relative ``--file`` is stored absolute (issue 9): a worker or Job started in another folder
reads the file that was named, not whatever its own folder has under that name.

On the main branch before issue 9 (06c5ce7), ``source_params`` stored ``--file`` as typed: the
work item's params held ``week.csv`` and a worker started elsewhere failed with "no such file"."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from market_spine.cli.run import source_params
from market_spine.core.partitions import Tier
from market_spine.db.schema import core_work_items
from market_spine.finra.sample import write_sample_week
from tests.support.cli import Spine


def test_enqueue_stores_a_relative_file_as_an_absolute_path(
    spine: Spine, spine_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    write_sample_week(folder / "week.csv", date(2025, 11, 10), Tier.OTC, symbols=3, seed=1)
    monkeypatch.chdir(folder)
    result = spine(
        "work", "enqueue", "finra.otc_transparency.ingest_week", "--week", "2025-11-10", "--tier", "OTC",
        "--file", "week.csv",
    )  # fmt: skip
    assert result.code == 0, result.err
    engine = create_engine(spine_env)
    with engine.connect() as conn:
        params = conn.execute(select(core_work_items.c.params)).scalar_one()
    engine.dispose()
    assert params == {"file": str(folder / "week.csv")}


def test_source_params_keep_urls_and_expand_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert source_params("https://example.com/w.csv", None) == {"file": "https://example.com/w.csv"}
    assert source_params("~/w.csv", None) == {"file": str(tmp_path / "w.csv")}
    assert source_params("../up/./w.csv", None)["file"] == str(Path.cwd().parent / "up" / "w.csv")
    assert source_params(None, "finra-api") == {"source": "finra-api"}
