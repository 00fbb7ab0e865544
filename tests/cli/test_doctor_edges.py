"""``spine doctor`` at the ends of the calendar (issue 9, "Also"): an ``--as-of`` whose window of
weeks runs off the calendar is one line and exit 2 ("could not check"), not a traceback.

On the main branch before issue 9 (06c5ce7), ``--as-of 0001-01-08`` raised OverflowError out of
``core.calendar`` with a traceback."""

from __future__ import annotations

import pytest

from tests.support.cli import Spine


@pytest.mark.parametrize(("as_of", "weeks"), [("0001-01-08", "12"), ("0001-03-05", "12"), ("0001-01-20", "1")])
def test_an_as_of_before_the_calendar_can_hold_the_window_is_a_usage_error(
    spine: Spine, as_of: str, weeks: str
) -> None:
    result = spine("doctor", "finra.otc_transparency", "--as-of", as_of, "--weeks", weeks)
    assert result.code == 2
    assert result.out == ""
    assert result.err == (
        f"spine: error: --as-of {as_of} with --weeks {weeks}: the weeks to check fall outside the calendar "
        "(years 1 to 9999); give a date of FINRA's era\n"
    )


def test_the_last_days_of_the_calendar_still_check(spine: Spine) -> None:
    result = spine("doctor", "finra.otc_transparency", "--as-of", "9999-12-31", "--weeks", "1", "--format", "json")
    assert result.code == 1
    gaps = result.json()["gaps"]
    assert [g["kind"] for g in gaps] == ["missing_partition"] * 3
    assert all(g["week"].startswith("9999-") for g in gaps)
