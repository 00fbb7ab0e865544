"""Gap detection (SPEC §5) as a pure function: missing, incomplete, stale, failed, remediation."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from market_spine.core.calendar import PublicationCalendar
from market_spine.core.gaps import (
    FailedWork,
    GapReport,
    IncompleteChain,
    LostWork,
    MissingPartition,
    StageMark,
    StaleTier,
    current_stages,
    detect_gaps,
    retry_command,
    run_command,
)
from market_spine.core.partitions import Tier, canonical_key, finra_partition
from market_spine.core.stages import COMPUTE, INGEST, NORMALIZE, Stage

T1, T2, OTC = Tier.NMS_TIER_1, Tier.NMS_TIER_2, Tier.OTC
AS_OF = date(2025, 12, 17)
W1, W2, W3 = date(2025, 12, 1), date(2025, 12, 8), date(2025, 12, 15)
TS = datetime(2025, 12, 16, 6, 0, tzinfo=UTC)
ALL_STAGES = {Stage.RAW: TS, Stage.NORMALIZED: TS, Stage.CALC: TS}

Manifest = dict[tuple[date, Tier], dict[Stage, datetime]]


def full_manifest(weeks: Sequence[date] = (W1, W2, W3), tiers: Sequence[Tier] = tuple(Tier)) -> Manifest:
    return {(w, t): dict(ALL_STAGES) for w in weeks for t in tiers}


def expected() -> list[tuple[date, Tier]]:
    """Three weeks × three tiers (which weeks the calendar expects is ``core.calendar``'s job)."""
    return [(w, t) for w in (W1, W2, W3) for t in Tier]


def on_monday(week: date, _tier: Tier) -> date:
    """A week that is due on its own Monday (the default without a calendar)."""
    return week


LATER = date(2025, 12, 24)  # the week after W3 has been due (on its Monday) for 2 days


def test_expected_fixture_is_3_weeks_by_3_tiers() -> None:
    assert expected() == [(w, t) for w in (W1, W2, W3) for t in (T1, T2, OTC)]


# --- healthy ----------------------------------------------------------------------------------------------


def test_healthy_when_everything_is_present() -> None:
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=full_manifest())
    assert report == GapReport(as_of=AS_OF, expected=9)
    assert report.healthy
    assert report.gap_count == 0
    assert (report.missing, report.incomplete, report.stale, report.failed) == ([], [], [], [])


def test_healthy_with_lenient_staleness() -> None:
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=full_manifest(), stale_after_days=7)
    assert report.healthy


def test_nothing_expected_is_healthy() -> None:
    report = detect_gaps(as_of=AS_OF, expected=[], manifest={})
    assert report.healthy
    assert report.expected == 0


def test_extra_manifest_partitions_are_ignored() -> None:
    manifest = full_manifest(weeks=(date(2025, 11, 24), W1, W2, W3))
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=manifest)
    assert report.healthy
    assert report.expected == 9


def test_duplicate_expected_partitions_count_once() -> None:
    report = detect_gaps(as_of=AS_OF, expected=expected() + expected(), manifest={})
    assert report.expected == 9
    assert len(report.missing) == 9


# --- missing ----------------------------------------------------------------------------------------------


def test_seed_scenario_one_week_missing_gives_exactly_three_missing_partitions() -> None:
    manifest = full_manifest(weeks=(W1, W3))
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=manifest)
    assert report.expected == 9
    assert not report.healthy
    assert report.gap_count == 3
    assert report.incomplete == [] and report.stale == [] and report.failed == []
    assert report.missing == [
        MissingPartition(
            W2,
            tier,
            f"spine run finra.otc_transparency.ingest_week --week 2025-12-08 --tier {tier.value} "
            "--source finra-api --chain",
        )
        for tier in (T1, T2, OTC)
    ]
    for gap in report.missing:
        assert gap.kind == "missing_partition"
        argv = shlex.split(gap.remediation)
        assert argv[:3] == ["spine", "run", INGEST]
        assert argv[3:7] == ["--week", "2025-12-08", "--tier", gap.tier.value]
        assert argv[-1] == "--chain"


def test_empty_stage_map_counts_as_missing() -> None:
    manifest = full_manifest()
    manifest[(W3, OTC)] = {}
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=manifest)
    assert [(g.week, g.tier) for g in report.missing] == [(W3, OTC)]
    assert report.incomplete == []


def test_missing_sorted_by_week_then_tier() -> None:
    shuffled = [(W3, OTC), (W1, T2), (W3, T1), (W1, OTC), (W2, T1)]
    report = detect_gaps(as_of=AS_OF, expected=shuffled, manifest={})
    assert [(g.week, g.tier) for g in report.missing] == sorted(shuffled)
    assert [(g.week, g.tier) for g in report.missing] == [
        (W1, T2),
        (W1, OTC),
        (W2, T1),
        (W3, T1),
        (W3, OTC),
    ]


def test_ingest_source_supplies_the_file_argument_with_shell_quoting() -> None:
    calls: list[tuple[date, Tier]] = []

    def landing(week: date, tier: Tier) -> tuple[str, ...]:
        calls.append((week, tier))
        return ("--file", f"/data/landing zone/finra {tier.value} {week.isoformat()}.csv")

    manifest = full_manifest()
    del manifest[(W2, OTC)]
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=manifest, ingest_source=landing)
    assert calls == [(W2, OTC)]
    (gap,) = report.missing
    assert gap.remediation == (
        "spine run finra.otc_transparency.ingest_week --week 2025-12-08 --tier OTC "
        "--file '/data/landing zone/finra OTC 2025-12-08.csv' --chain"
    )
    assert shlex.split(gap.remediation) == [
        "spine",
        "run",
        INGEST,
        "--week",
        "2025-12-08",
        "--tier",
        "OTC",
        "--file",
        "/data/landing zone/finra OTC 2025-12-08.csv",
        "--chain",
    ]


@pytest.mark.parametrize(
    "path",
    ["/data/o'brien.csv", "/data/$HOME/x.csv", "/data/a;rm -rf b.csv", '/data/"quoted".csv', "/data/tab\there.csv"],
)
def test_awkward_paths_round_trip_through_the_shell(path: str) -> None:
    report = detect_gaps(as_of=AS_OF, expected=[(W1, T1)], manifest={}, ingest_source=lambda _w, _t: ("--file", path))
    argv = shlex.split(report.missing[0].remediation)
    assert argv[argv.index("--file") + 1] == path
    assert argv[-1] == "--chain"


# --- incomplete chains ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("present", "missing", "pipeline"),
    [
        ((Stage.RAW,), (Stage.NORMALIZED, Stage.CALC), NORMALIZE),
        ((Stage.RAW, Stage.NORMALIZED), (Stage.CALC,), COMPUTE),
        ((Stage.RAW, Stage.CALC), (Stage.NORMALIZED,), NORMALIZE),
    ],
)
def test_incomplete_chain_runs_the_first_missing_stage(
    present: tuple[Stage, ...], missing: tuple[Stage, ...], pipeline: str
) -> None:
    calls: list[tuple[date, Tier]] = []

    def source(week: date, tier: Tier) -> tuple[str, ...]:
        calls.append((week, tier))
        return ("--source", "finra-api")

    manifest = full_manifest()
    manifest[(W3, T2)] = {stage: TS for stage in present}
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=manifest, ingest_source=source)
    assert report.missing == []
    assert report.incomplete == [
        IncompleteChain(
            W3,
            T2,
            present,
            missing,
            f"spine run {pipeline} --week 2025-12-15 --tier NMS_TIER_2 --chain",
        )
    ]
    assert report.incomplete[0].kind == "incomplete_chain"
    assert calls == []  # later stages read the stage before them from the database: no source argument
    assert report.gap_count == 1


def test_raw_present_normalized_missing_runs_normalize_week() -> None:
    manifest = full_manifest()
    manifest[(W2, OTC)] = {Stage.RAW: TS}
    report = detect_gaps(as_of=AS_OF, expected=expected(), manifest=manifest)
    (gap,) = report.incomplete
    assert isinstance(gap, IncompleteChain)
    assert gap.present == (Stage.RAW,)
    assert gap.missing == (Stage.NORMALIZED, Stage.CALC)
    assert gap.remediation == ("spine run finra.otc_transparency.normalize_week --week 2025-12-08 --tier OTC --chain")


def test_raw_missing_but_later_stages_present_re_ingests() -> None:
    manifest = full_manifest()
    manifest[(W1, T1)] = {Stage.NORMALIZED: TS, Stage.CALC: TS}
    report = detect_gaps(
        as_of=AS_OF, expected=expected(), manifest=manifest, ingest_source=lambda _w, _t: ("--file", "/x y.csv")
    )
    (gap,) = report.incomplete
    assert gap.present == (Stage.NORMALIZED, Stage.CALC)
    assert gap.missing == (Stage.RAW,)
    assert gap.remediation == (
        "spine run finra.otc_transparency.ingest_week --week 2025-12-01 --tier NMS_TIER_1 --file '/x y.csv' --chain"
    )


# --- failed work --------------------------------------------------------------------------------------------


def test_failed_work_gets_a_retry_command() -> None:
    key = canonical_key(finra_partition(W3, OTC))
    report = detect_gaps(
        as_of=AS_OF,
        expected=expected(),
        manifest=full_manifest(),
        failed_work=[
            (NORMALIZE, key, "row 17: negative volume"),
            (INGEST, canonical_key(finra_partition(W2, T1)), None),
        ],
    )
    assert not report.healthy
    assert report.gap_count == 2
    assert report.failed == [
        FailedWork(
            NORMALIZE,
            key,
            "row 17: negative volume",
            "spine work retry finra.otc_transparency.normalize_week --week 2025-12-15 --tier OTC",
        ),
        FailedWork(
            INGEST,
            '{"tier":"NMS_TIER_1","week":"2025-12-08"}',
            None,
            "spine work retry finra.otc_transparency.ingest_week --week 2025-12-08 --tier NMS_TIER_1",
        ),
    ]
    assert all(g.kind == "failed_work" for g in report.failed)


def test_a_lost_attempt_alone_makes_the_report_unhealthy() -> None:
    lost = LostWork(INGEST, '{"tier":"OTC","week":"2025-12-15"}', "host-1-42", datetime(2026, 1, 5, 9, tzinfo=UTC))
    report = detect_gaps(as_of=date(2026, 1, 5), expected=[], manifest={}, lost_work=[lost])
    assert (report.healthy, report.gap_count, report.lost) == (False, 1, [lost])
    assert (lost.kind, lost.remediation) == ("lost_work", "spine worker --until-idle")


def test_retry_command_ignores_key_order() -> None:
    a = retry_command(COMPUTE, '{"tier":"OTC","week":"2025-12-15"}')
    b = retry_command(COMPUTE, '{"week": "2025-12-15", "tier": "OTC"}')
    assert a == b == "spine work retry finra.otc_transparency.compute_week --week 2025-12-15 --tier OTC"


# --- stale --------------------------------------------------------------------------------------------------


def test_stale_after_days() -> None:
    # Every partition is complete, but the week after the newest one (W3) was due 2 days ago.
    report = detect_gaps(as_of=LATER, expected=expected(), manifest=full_manifest(), stale_after_days=1)
    assert report.stale == [
        StaleTier(
            tier,
            W3,
            9,
            f"spine run finra.otc_transparency.ingest_week --week 2025-12-15 --tier {tier.value} "
            "--source finra-api --chain",
        )
        for tier in (T1, T2, OTC)
    ]
    assert all(g.kind == "stale" for g in report.stale)
    assert report.gap_count == 3
    assert not report.healthy


@pytest.mark.parametrize(("days", "stale"), [(0, True), (1, True), (2, False), (3, False)])
def test_stale_boundary_is_strictly_older(days: int, stale: bool) -> None:
    report = detect_gaps(as_of=LATER, expected=expected(), manifest=full_manifest(), stale_after_days=days)
    assert bool(report.stale) is stale


def test_a_tier_is_not_stale_before_finra_publishes_its_next_week() -> None:
    # OTC's next week after W3 (2025-12-22) is published 35 days later, on 2026-01-26, and due a
    # day after: until then OTC is as fresh as FINRA allows, however old W3 is.
    due = PublicationCalendar(grace_days=1).due
    manifest = full_manifest(tiers=(OTC,))
    window = [(w, OTC) for w in (W1, W2, W3)]
    fresh = detect_gaps(as_of=date(2026, 1, 27), expected=window, manifest=manifest, stale_after_days=0, due=due)
    assert fresh.healthy
    late = detect_gaps(as_of=date(2026, 1, 28), expected=window, manifest=manifest, stale_after_days=0, due=due)
    assert [(g.tier, g.newest_week, g.age_days) for g in late.stale] == [(OTC, W3, 44)]


def test_no_stale_check_without_threshold() -> None:
    report = detect_gaps(as_of=date(2026, 6, 1), expected=expected(), manifest=full_manifest())
    assert report.stale == []


def test_stale_uses_the_newest_calc_week_even_outside_the_window() -> None:
    # OTC has a newer complete week than the window expects: it is fresh.
    window = [(w, t) for w in (W1, W2) for t in Tier]
    report = detect_gaps(as_of=LATER, expected=window, manifest=full_manifest(), stale_after_days=5, due=on_monday)
    assert report.healthy


def test_stale_ignores_weeks_without_calc() -> None:
    # T1's week W3 has RAW only, and is outside the expected window: the newest *complete* week is W2.
    window = [(w, T1) for w in (W1, W2)]
    manifest = full_manifest(weeks=(W1, W2), tiers=(T1,))
    manifest[(W3, T1)] = {Stage.RAW: TS}
    report = detect_gaps(as_of=AS_OF + timedelta(days=1), expected=window, manifest=manifest, stale_after_days=2)
    (gap,) = report.stale
    assert (gap.tier, gap.newest_week, gap.age_days) == (T1, W2, 10)
    assert gap.remediation.startswith("spine run finra.otc_transparency.ingest_week --week 2025-12-08 ")


def test_stale_not_double_counted_for_missing_or_incomplete_tiers() -> None:
    manifest = full_manifest()
    del manifest[(W3, OTC)]  # OTC: missing
    manifest[(W3, T2)] = {Stage.RAW: TS}  # T2: incomplete
    report = detect_gaps(as_of=LATER, expected=expected(), manifest=manifest, stale_after_days=1)
    assert [g.tier for g in report.missing] == [OTC]
    assert [g.tier for g in report.incomplete] == [T2]
    assert [g.tier for g in report.stale] == [T1]
    assert report.gap_count == 3


def test_stale_remediation_uses_ingest_source() -> None:
    report = detect_gaps(
        as_of=LATER,
        expected=[(W3, OTC)],
        manifest=full_manifest(tiers=(OTC,)),
        stale_after_days=0,
        ingest_source=lambda w, t: ("--file", f"/landing/{t.value} {w}.csv"),
    )
    (gap,) = report.stale
    assert gap.remediation == (
        "spine run finra.otc_transparency.ingest_week --week 2025-12-15 --tier OTC "
        "--file '/landing/OTC 2025-12-15.csv' --chain"
    )


# --- everything at once ------------------------------------------------------------------------------------


def test_all_gap_kinds_together() -> None:
    manifest = full_manifest()
    del manifest[(W1, T1)]
    manifest[(W2, T2)] = {Stage.RAW: TS, Stage.NORMALIZED: TS}
    report = detect_gaps(
        as_of=LATER,
        expected=expected(),
        manifest=manifest,
        failed_work=[(COMPUTE, canonical_key(finra_partition(W2, T2)), "boom")],
        stale_after_days=1,
    )
    assert [(g.week, g.tier) for g in report.missing] == [(W1, T1)]
    assert [(g.week, g.tier) for g in report.incomplete] == [(W2, T2)]
    assert [g.tier for g in report.stale] == [OTC]
    assert [g.partition_key for g in report.failed] == ['{"tier":"NMS_TIER_2","week":"2025-12-08"}']
    assert report.gap_count == 4
    assert not report.healthy


# --- command builders -----------------------------------------------------------------------------------


def test_run_command_shapes() -> None:
    assert run_command(INGEST, W3, OTC) == (
        "spine run finra.otc_transparency.ingest_week --week 2025-12-15 --tier OTC --chain"
    )
    assert run_command(INGEST, W3, OTC, ("--source", "finra-api"), chain=False) == (
        "spine run finra.otc_transparency.ingest_week --week 2025-12-15 --tier OTC --source finra-api"
    )
    assert run_command(COMPUTE, W1, T1, ["--file", "a b"]) == (
        "spine run finra.otc_transparency.compute_week --week 2025-12-01 --tier NMS_TIER_1 --file 'a b' --chain"
    )


# --- lineage: stages computed from an older load of their input (issue 9) --------------------------


Mark = tuple[str, str, str | None]  # (capture, execution, upstream execution)


def _chain(raw: Mark, normalized: Mark, calc: Mark) -> dict[Stage, StageMark]:
    return {stage: StageMark(TS, *mark) for stage, mark in zip(STAGES, (raw, normalized, calc), strict=True)}


STAGES = (Stage.RAW, Stage.NORMALIZED, Stage.CALC)


def test_a_stage_computed_from_the_current_load_is_current() -> None:
    current, stale = current_stages(_chain(("c1", "e1", None), ("c1", "e2", "e1"), ("c1", "e3", "e2")))
    assert (list(current), stale) == (list(STAGES), ())


def test_a_replayed_ingest_makes_both_later_stages_stale() -> None:
    # Ingest ran again for capture c1 (execution e4): NORMALIZED was computed from e1's rows, and
    # CALC from that NORMALIZED, so both are behind though they hold the same capture id.
    current, stale = current_stages(_chain(("c1", "e4", None), ("c1", "e2", "e1"), ("c1", "e3", "e2")))
    assert (list(current), stale) == ([Stage.RAW], (Stage.NORMALIZED, Stage.CALC))


def test_normalize_run_again_alone_makes_calc_stale() -> None:
    current, stale = current_stages(_chain(("c1", "e1", None), ("c1", "e5", "e1"), ("c1", "e3", "e2")))
    assert (list(current), stale) == ([Stage.RAW, Stage.NORMALIZED], (Stage.CALC,))


def test_another_capture_is_missing_not_stale_and_rows_without_lineage_are_not_judged() -> None:
    restated, stale = current_stages(_chain(("c2", "e9", None), ("c1", "e2", "e1"), ("c1", "e3", "e2")))
    assert (list(restated), stale) == ([Stage.RAW], ())
    # Rows written before lineage was recorded (upstream NULL) count as current.
    legacy, stale = current_stages(_chain(("c1", "e1", None), ("c1", "e2", None), ("c1", "e3", None)))
    assert (list(legacy), stale) == (list(STAGES), ())


def test_stale_stages_are_an_incomplete_chain_whose_fix_reruns_the_first() -> None:
    current, stale = current_stages(_chain(("c1", "e4", None), ("c1", "e2", "e1"), ("c1", "e3", "e2")))
    report = detect_gaps(as_of=AS_OF, expected=[(W1, T1)], manifest={(W1, T1): current}, outdated={(W1, T1): stale})
    (gap,) = report.incomplete
    later = (Stage.NORMALIZED, Stage.CALC)
    assert (gap.present, gap.missing, gap.stale) == ((Stage.RAW,), later, later)
    assert gap.remediation == run_command(NORMALIZE, W1, T1)
    assert not report.healthy
