"""Revision 0002 relabels a database written under the old week model (partitions named by the
``lastUpdateDate`` FINRA stamped on a file) with the trading weeks the rows describe."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from market_spine.db import migrate

OLD_OTC = "finra.otc_transparency:OTC:2025-12-15:20251216"  # the file published 2025-12-15
OLD_OTC_CORRECTION = "finra.otc_transparency:OTC:2025-12-19:20251219"  # a correction day, same week
OLD_T1 = "finra.otc_transparency:NMS_TIER_1:2025-12-15:20251216"


def _old_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        for capture, week, tier, published in (
            (OLD_OTC, "2025-12-15", "OTC", "2025-12-15"),
            (OLD_OTC_CORRECTION, "2025-12-19", "OTC", "2025-12-19"),
            (OLD_T1, "2025-12-15", "NMS_TIER_1", "2025-12-15"),
        ):
            conn.execute(
                text(
                    "INSERT INTO finra_otc_transparency_raw (capture_id, captured_at, week_ending, tier, source_file,"
                    " line_number, record_hash, last_update_date) VALUES (:c, '2025-12-16T00:00:00Z', :w, :t, 'f', 2,"
                    " 'h', :p)"
                ),
                {"c": capture, "w": week, "t": tier, "p": published},
            )
            conn.execute(
                text(
                    "INSERT INTO core_manifest (domain, partition_key, stage, week_ending, tier, row_count, capture_id,"
                    " updated_at) VALUES ('finra.otc_transparency', :k, 'RAW', :w, :t, 1, :c, :u)"
                ),
                {
                    "k": f'{{"tier":"{tier}","week_ending":"{week}"}}',
                    "w": week,
                    "t": tier,
                    "c": capture,
                    "u": "2025-12-19T00:00:00Z" if capture == OLD_OTC_CORRECTION else "2025-12-16T00:00:00Z",
                },
            )
        conn.execute(
            text(
                "INSERT INTO core_work_items (domain, pipeline, partition_key, params, capture_id) VALUES"
                " ('finra.otc_transparency', 'finra.otc_transparency.normalize_week', :k, :p, :c)"
            ),
            {"k": '{"tier":"OTC","week_ending":"2025-12-15"}', "p": f'{{"capture_id": "{OLD_OTC}"}}', "c": OLD_OTC},
        )
        conn.execute(
            text(
                "INSERT INTO core_executions (execution_id, domain, pipeline, partition_key, backend, capture_id)"
                " VALUES ('e1', 'finra.otc_transparency', 'finra.otc_transparency.ingest_week', :k, 'cli', :c)"
            ),
            {"k": '{"tier":"NMS_TIER_1","week_ending":"2025-12-15"}', "c": OLD_T1},
        )


def test_0002_relabels_old_rows_with_their_trading_weeks(empty_engine: Engine) -> None:
    cfg = migrate._config()
    with empty_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    _old_rows(empty_engine)
    migrate.upgrade(empty_engine)

    with empty_engine.connect() as conn:
        raw = conn.execute(
            text("SELECT capture_id, week::text, tier FROM finra_otc_transparency_raw ORDER BY capture_id")
        ).all()
        manifest = conn.execute(
            text("SELECT partition_key, week::text, capture_id FROM core_manifest ORDER BY 1")
        ).all()
        item = conn.execute(
            text("SELECT partition_key, params ->> 'capture_id', capture_id FROM core_work_items")
        ).one()
        execution = conn.execute(text("SELECT partition_key, capture_id FROM core_executions")).one()
        captures = conn.execute(
            text(
                "SELECT capture_id, week::text, tier, row_count, published_from::text, published_to::text"
                " FROM finra_otc_transparency_captures ORDER BY capture_id"
            )
        ).all()
        latest = conn.execute(text("SELECT count(*), min(week)::text FROM finra_otc_transparency_raw_latest")).one()
    # OTC: published 35 days after the week's Monday; Tier 1: 21 days. A correction day is the same week.
    assert [tuple(r) for r in raw] == [
        ("finra.otc_transparency:NMS_TIER_1:2025-11-24:20251216", "2025-11-24", "NMS_TIER_1"),
        ("finra.otc_transparency:OTC:2025-11-10:20251216", "2025-11-10", "OTC"),
        ("finra.otc_transparency:OTC:2025-11-10:20251219", "2025-11-10", "OTC"),
    ]
    # Two old OTC partitions are now one week: the newer manifest row is kept.
    t1, otc = "finra.otc_transparency:NMS_TIER_1:2025-11-24", "finra.otc_transparency:OTC:2025-11-10"
    assert [tuple(r) for r in manifest] == [
        ('{"tier":"NMS_TIER_1","week":"2025-11-24"}', "2025-11-24", f"{t1}:20251216"),
        ('{"tier":"OTC","week":"2025-11-10"}', "2025-11-10", f"{otc}:20251219"),
    ]
    assert tuple(item) == (
        '{"tier":"OTC","week":"2025-11-10"}',
        "finra.otc_transparency:OTC:2025-11-10:20251216",
        "finra.otc_transparency:OTC:2025-11-10:20251216",
    )
    assert tuple(execution) == (
        '{"tier":"NMS_TIER_1","week":"2025-11-24"}',
        "finra.otc_transparency:NMS_TIER_1:2025-11-24:20251216",
    )
    assert [tuple(c) for c in captures] == [
        (f"{t1}:20251216", "2025-11-24", "NMS_TIER_1", 1, "2025-12-15", "2025-12-15"),
        (f"{otc}:20251216", "2025-11-10", "OTC", 1, "2025-12-15", "2025-12-15"),
        (f"{otc}:20251219", "2025-11-10", "OTC", 1, "2025-12-19", "2025-12-19"),
    ]
    assert tuple(latest) == (2, "2025-11-10")  # the views follow the new column: one capture per partition

    # Downgrade reverses the schema (without the holiday move) and relabels back.
    cfg = migrate._config()
    with empty_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with empty_engine.connect() as conn:
        keys = conn.execute(text("SELECT partition_key, week_ending::text FROM core_manifest ORDER BY 1")).all()
    assert [tuple(k) for k in keys] == [
        ('{"tier":"NMS_TIER_1","week_ending":"2025-12-15"}', "2025-12-15"),
        ('{"tier":"OTC","week_ending":"2025-12-15"}', "2025-12-15"),
    ]
