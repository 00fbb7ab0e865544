"""``spine query`` (issue 10): every computed table has a command, ``hhi`` and ``venue-share`` sort,
limit and filter by venue count, and the three formats carry the same fields and values (the same
timestamp text; a CSV header even with no rows). Run through the real CLI on sample FINRA weeks."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from pathlib import Path

import pytest

from market_spine.core.partitions import Tier
from market_spine.finra.sample import write_sample_week
from market_spine.services import query as service
from tests.support.cli import Spine

INGEST = "finra.otc_transparency.ingest_week"
OTC_WEEK, T1_WEEK = date(2025, 11, 10), date(2025, 11, 24)  # both first published on 2025-12-15


@pytest.fixture
def loaded(spine: Spine, tmp_path: Path) -> Spine:
    """An OTC week with one row normalize refuses (a blank symbol), and a Tier 1 week, computed."""
    otc = write_sample_week(tmp_path / "otc.csv", OTC_WEEK, Tier.OTC, symbols=40, seed=3)
    lines = otc.read_text(encoding="utf-8").splitlines()
    fields = lines[1].split("|")
    fields[1] = ""  # issueSymbolIdentifier
    otc.write_text("\n".join([*lines, "|".join(fields)]) + "\n", encoding="utf-8")
    t1 = write_sample_week(tmp_path / "t1.csv", T1_WEEK, Tier.NMS_TIER_1, symbols=30, seed=5)
    for path, week, tier in ((otc, OTC_WEEK, "OTC"), (t1, T1_WEEK, "NMS_TIER_1")):
        done = spine("run", INGEST, "--week", week.isoformat(), "--tier", tier, "--file", str(path), "--chain")
        assert done.code == 0, done.err
    return spine


def _json(spine: Spine, *args: str) -> list[dict[str, object]]:
    result = spine("query", *args, "--format", "json")
    assert result.code == 0, result.err
    rows = result.json()
    assert isinstance(rows, list)
    return rows


def test_tier_share_and_rank_are_queryable(loaded: Spine) -> None:
    rows = _json(loaded, "tier-share", "--week", "2025-11-12", "--tier", "OTC")
    assert rows and all(list(r) == list(service.TIER_SHARE_FIELDS) for r in rows)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    volumes = [int(str(r["volume"])) for r in rows]
    assert volumes == sorted(volumes, reverse=True)
    assert sum(float(str(r["share"])) for r in rows) == pytest.approx(1.0)
    assert {(r["week"], r["tier"]) for r in rows} == {("2025-11-10", "OTC")}
    assert _json(loaded, "tier-share", "--week", "2025-11-10", "--tier", "OTC", "--limit", "2") == rows[:2]


def test_rejected_rows_are_queryable(loaded: Spine) -> None:
    (reject,) = _json(loaded, "rejects", "--week", "2025-11-10", "--tier", "OTC")
    assert list(reject) == list(service.REJECT_FIELDS)
    assert reject["stage"] == "NORMALIZED"
    assert "symbol" in str(reject["reason"]).lower()
    assert isinstance(reject["record"], dict) and reject["record"]["issueSymbolIdentifier"] == ""
    assert _json(loaded, "rejects", "--week", "2025-11-24", "--tier", "NMS_TIER_1") == []


def test_hhi_sorts_limits_and_filters_by_venue_count(loaded: Spine) -> None:
    everything = _json(loaded, "hhi", "--week", "2025-11-10", "--tier", "OTC")
    multi = [r for r in everything if int(str(r["venue_count"])) >= 2]
    assert 5 < len(multi) < len(everything)  # the sample has single- and multi-venue symbols
    top = _json(
        loaded, "hhi", "--week", "2025-11-10", "--tier", "OTC", "--sort", "hhi", "--limit", "5", "--min-venues", "2"
    )
    expected = sorted(multi, key=lambda r: (-float(str(r["hhi"])), -int(str(r["volume"])), str(r["symbol"])))[:5]
    assert top == expected
    by_volume = _json(loaded, "hhi", "--week", "2025-11-10", "--tier", "OTC", "--sort", "volume", "--limit", "3")
    assert by_volume == sorted(everything, key=lambda r: (-int(str(r["volume"])), str(r["symbol"])))[:3]
    by_venues = _json(loaded, "hhi", "--week", "2025-11-10", "--tier", "OTC", "--sort", "venues")
    assert [r["venue_count"] for r in by_venues] == sorted((r["venue_count"] for r in everything), reverse=True)  # type: ignore[type-var]


def test_venue_share_sorts_limits_and_filters_by_venue_count(loaded: Spine) -> None:
    everything = _json(loaded, "venue-share", "--week", "2025-11-10", "--tier", "OTC")
    counts: dict[object, int] = {}
    for row in everything:
        counts[row["symbol"]] = counts.get(row["symbol"], 0) + 1
    assert all(row["venue_count"] == counts[row["symbol"]] for row in everything)
    multi = _json(loaded, "venue-share", "--week", "2025-11-10", "--tier", "OTC", "--min-venues", "3")
    assert multi and multi == [r for r in everything if counts[r["symbol"]] >= 3]
    top = _json(loaded, "venue-share", "--week", "2025-11-10", "--tier", "OTC", "--sort", "share", "--limit", "4")
    expected = sorted(
        everything, key=lambda r: (-float(str(r["share"])), -int(str(r["volume"])), str(r["symbol"]), str(r["mpid"]))
    )
    assert top == expected[:4]


def test_without_a_week_each_tiers_newest_computed_week_is_read(loaded: Spine) -> None:
    """The README's `spine query hhi --sort hhi --limit 5 --min-venues 2`, after data is loaded."""
    result = loaded("query", "hhi", "--sort", "hhi", "--limit", "5", "--min-venues", "2", "--format", "json")
    assert result.code == 0, result.err
    assert result.err == (
        "no --week: each tier's newest week: NMS_TIER_1 2025-11-24 (Mon 2025-11-24 – Fri 2025-11-28), "
        "OTC 2025-11-10 (Mon 2025-11-10 – Fri 2025-11-14)\n"
    )
    rows = result.json()
    assert len(rows) == 5
    both = _json(loaded, "hhi", "--week", "2025-11-10", "--tier", "OTC") + _json(
        loaded, "hhi", "--week", "2025-11-24", "--tier", "NMS_TIER_1"
    )
    multi = [r for r in both if int(str(r["venue_count"])) >= 2]
    assert rows == sorted(multi, key=lambda r: (-float(str(r["hhi"])), -int(str(r["volume"])), str(r["symbol"])))[:5]
    # The note names the weeks read, not only those of the rows shown.
    top = ("query", "hhi", "--sort", "hhi", "--limit", "1", "--min-venues", "2")
    (one,) = loaded(*top, "--format", "json").json()
    assert loaded(*top).err == result.err
    assert one == rows[0]
    only_t1 = _json(loaded, "tier-share", "--tier", "T1")
    assert only_t1 and {r["week"] for r in only_t1} == {"2025-11-24"}
    latest = loaded("query", "hhi", "--week", "latest")
    assert latest.code == 2
    assert latest.err == "spine: error: --week latest needs --tier: each tier has its own newest published week\n"


@pytest.mark.parametrize("command", ["hhi", "venue-share", "tier-share", "rejects", "captures"])
def test_json_csv_and_table_carry_the_same_fields_and_values(loaded: Spine, command: str) -> None:
    args = ("query", command, "--week", "2025-11-10", "--tier", "OTC")
    as_json = loaded(*args, "--format", "json").json()
    as_csv = list(csv.reader(io.StringIO(loaded(*args, "--format", "csv").out)))
    table = loaded(*args).out.splitlines()  # piped: plain aligned text
    assert as_json, command
    header = list(as_json[0])
    assert as_csv[0] == header
    assert re.split(r"\s{2,}", table[0]) == [h.upper() for h in header]
    assert len(as_csv) == len(table) == len(as_json) + 1

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value, separators=(",", ":"), sort_keys=True) if isinstance(value, dict) else str(value)

    for obj, row in zip(as_json, as_csv[1:], strict=True):
        assert row == [text(v) for v in obj.values()]
    stamps = [obj["captured_at"] for obj in as_json]
    # One timestamp form everywhere: ISO 8601, UTC, microseconds.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", str(s)) for s in stamps)
    assert all(str(stamp) in line for stamp, line in zip(stamps, table[1:], strict=True))


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (("query", "hhi", "--week", "2025-11-17", "--tier", "OTC"), service.HHI_FIELDS),
        (("query", "venue-share", "--tier", "OTC"), service.VENUE_SHARE_FIELDS),
        (("query", "tier-share"), service.TIER_SHARE_FIELDS),
        (("query", "rejects", "--tier", "OTC"), service.REJECT_FIELDS),
        (("query", "captures", "--tier", "OTC"), service.CAPTURE_FIELDS),
        (("work", "list"), ("name", "pipeline", "week", "tier", "state", "attempts", "priority", "next_attempt_at",
                            "last_error")),
    ],
)  # fmt: skip
def test_csv_always_has_a_header(spine: Spine, args: tuple[str, ...], fields: tuple[str, ...]) -> None:
    empty = spine(*args, "--format", "csv")
    assert empty.code == 0, empty.err
    assert empty.out == ",".join(fields) + "\n"
    assert spine(*args, "--format", "json").out == "[]\n"
    table = spine(*args)
    defaulted = args[0] == "query" and "--week" not in args
    note = "no --week: each tier's newest week: none computed yet\n" if defaulted else ""
    assert (table.out, table.err) == ("", note + "no rows\n")
