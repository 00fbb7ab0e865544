"""Finding 7, "no way out", through the real CLI on the local backend: ``spine work wake`` runs a
RETRY_WAIT item now, ``spine work dismiss`` accepts a failure so the doctor stops reporting it,
``spine work retry`` re-opens a CANCELLED item (and ``enqueue`` says so), and every refusal is one
line in the user's words with the command that helps, exit code 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.cli import Result, Spine
from tests.support.finra_api import FinraApi

INGEST = "finra.otc_transparency.ingest_week"
T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)
OTC = ("--week", "2025-11-10", "--tier", "OTC")
REF = f"{INGEST} --week 2025-11-10 --tier OTC"
TYPO = ("--week", "9999-06-07", "--tier", "OTC")  # a Monday of year 9999: a typo, never published


def _item(spine: Spine, week: str = "2025-11-10") -> dict[str, Any]:
    listed = spine("work", "list", "--format", "json")
    assert listed.code == 0, listed.err
    (found,) = [i for i in listed.json() if i["pipeline"] == INGEST and i["week"] == week]
    return dict(found)


def _refused(result: Result, message: str) -> None:
    assert result.code == 2
    assert "Traceback" not in result.err
    assert result.err.splitlines() == [f"spine: error: {message}"]
    for internal in ("admin_retry", "fail_final", "allowed:", "wake,"):
        assert internal not in result.err


@pytest.fixture
def waiting(spine: Spine, finra_api: FinraApi) -> Spine:
    """An OTC ingest in RETRY_WAIT after a 503, its next attempt due at T0 + 5 minutes."""
    spine.now = T0
    assert spine("work", "enqueue", INGEST, *OTC, "--source", "finra-api").code == 0
    finra_api.fail(503, times=3)
    assert spine("worker", "--until-idle").code == 0
    assert _item(spine)["state"] == "RETRY_WAIT"
    return spine


def test_wake_runs_a_retry_wait_item_now(waiting: Spine) -> None:
    woken = waiting("work", "wake", INGEST, *OTC)
    assert woken.code == 0, woken.err
    assert woken.out == f'{INGEST} {{"tier":"OTC","week":"2025-11-10"}}: PENDING, due now\n'
    ran = waiting("worker", "--until-idle")  # still T0: five minutes before its backoff ended
    assert ran.code == 0, ran.err
    item = _item(waiting)
    assert (item["state"], item["attempts"]) == ("COMPLETE", "2/3")  # the attempts are not reset


def test_retry_of_a_waiting_item_says_wake_runs_it_now(waiting: Spine) -> None:
    _refused(
        waiting("work", "retry", INGEST, *OTC),
        f"can't retry {REF}: it is waiting for its next attempt at 2025-12-16T10:35:00+00:00; "
        f"`spine work wake {REF}` runs it now",
    )
    _refused(
        waiting("work", "dismiss", INGEST, *OTC),
        f"can't dismiss {REF}: only a FAILED item can be; it has attempts left; `spine work cancel {REF}` stops it",
    )


def _doctor(spine: Spine) -> Result:
    return spine(
        "doctor", "finra.otc_transparency", "--weeks", "1", "--as-of", "2025-12-16", "--tier", "OTC", "--format", "json"
    )


def test_a_failed_typo_is_dismissed_and_the_doctor_stops_reporting_it(spine: Spine, finra_api: FinraApi) -> None:
    spine.now = T0
    assert spine("work", "enqueue", INGEST, *OTC, "--source", "finra-api", "--chain").code == 0
    assert spine("work", "enqueue", INGEST, *TYPO, "--source", "finra-api", "--max-attempts", "1").code == 0
    assert spine("worker", "--until-idle").code == 0
    assert _item(spine, "9999-06-07")["state"] == "FAILED"
    before = _doctor(spine)
    assert before.code == 1 and before.json()["failed_work"] == 1

    dismissed = spine("work", "dismiss", INGEST, *TYPO, "--reason", "typo: meant 2025-06-09")
    assert dismissed.code == 0, dismissed.err
    assert dismissed.out.endswith(": CANCELLED (dismissed: typo: meant 2025-06-09)\n")
    after = _doctor(spine)
    assert after.code == 0, after.out  # healthy: the only gap was the failure someone accepted
    assert after.json()["failed_work"] == 0

    reopened = spine("work", "retry", INGEST, *TYPO)  # a dismissal is not for ever
    assert reopened.code == 0 and _item(spine, "9999-06-07")["state"] == "PENDING"


def test_a_cancelled_partition_runs_again_after_a_retry_and_enqueue_says_how(spine: Spine, finra_api: FinraApi) -> None:
    spine.now = T0
    enqueue = ("work", "enqueue", INGEST, *OTC, "--source", "finra-api")
    assert spine(*enqueue).code == 0
    assert spine("work", "cancel", INGEST, *OTC).code == 0
    again = spine(*enqueue)
    assert again.code == 0
    assert again.out.endswith(f"is CANCELLED; nothing changed; `spine work retry {REF}` re-opens it\n")
    _refused(
        spine("work", "cancel", INGEST, *OTC),
        f"can't cancel {REF}: it is cancelled already (`spine work retry {REF}` re-opens it)",
    )
    assert spine("work", "retry", INGEST, *OTC).code == 0
    assert spine("worker", "--until-idle").code == 0
    item = _item(spine)
    assert (item["state"], item["attempts"]) == ("COMPLETE", "1/3")


def test_every_verb_refuses_in_words_what_the_state_does_not_allow(spine: Spine, finra_api: FinraApi) -> None:
    spine.now = T0
    assert spine("work", "enqueue", INGEST, *OTC, "--source", "finra-api").code == 0
    _refused(
        spine("work", "retry", INGEST, *OTC),
        f"can't retry {REF}: it is waiting to run already, with its attempts unused",
    )
    _refused(
        spine("work", "wake", INGEST, *OTC),
        f"can't wake {REF}: it is not waiting for a retry; it runs as soon as a worker is free",
    )
    assert spine("worker", "--until-idle").code == 0
    _refused(
        spine("work", "cancel", INGEST, *OTC),
        f"can't cancel {REF}: it already completed; nothing is running (`spine work retry {REF}` runs it again)",
    )
    _refused(spine("work", "dismiss", INGEST, *OTC), f"can't dismiss {REF}: only a FAILED item can be; it completed")
    _refused(
        spine("work", "wake", INGEST, *OTC), f"can't wake {REF}: it completed; `spine work retry {REF}` runs it again"
    )
    spine.now = T0 + timedelta(days=1)
    assert spine("work", "retry", INGEST, *OTC).code == 0  # COMPLETE → PENDING: a deliberate re-run
