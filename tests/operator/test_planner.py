"""The operator's pure planner (``core.reconcile``): every decision, with a clock we hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from market_spine.core import reconcile as core
from market_spine.core.resource import (
    AttemptOutcome,
    ConditionStatus,
    ConditionType,
    WorkItemResourceSpec,
    WorkItemStatus,
)
from market_spine.core.states import WorkState
from market_spine.errors import InputFileError, UsageError
from market_spine.kube.jobs import JobView, PodOutcome
from market_spine.kube.jobs import observe as observe_job

T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)
TIMING = core.Timing(start_timeout=timedelta(seconds=600), default_deadline=timedelta(seconds=3600))
NAME = "ingest-week-2025-12-15-otc-231acfd0"


def spec(**extra: Any) -> WorkItemResourceSpec:
    data = {
        "pipeline": "finra.otc_transparency.ingest_week",
        "partition": {"week": "2025-12-15", "tier": "OTC"},
        "params": {"source": "finra-api"},
    }
    return WorkItemResourceSpec.model_validate(data | extra)


def observe(status: WorkItemStatus | None = None, now: datetime = T0, **kw: Any) -> core.Observation:
    values: dict[str, Any] = {
        "name": NAME,
        "namespace": "ns",
        "uid": "uid-1",
        "generation": 1,
        "spec": spec(),
        "status": status or WorkItemStatus(),
        "now": now,
    }
    values.update(kw)
    return core.Observation(**values)


def step(obs: core.Observation) -> core.Plan:
    plan = core.plan(obs, TIMING)
    again = core.plan(replace(obs, status=plan.status), TIMING)
    # Level-triggered: planning again from the result (same observation) changes nothing.
    if not plan.create_job and not plan.delete_job:
        assert not again.changed, "planning again changed the status"
    return plan


def cond(status: WorkItemStatus, kind: ConditionType) -> tuple[str, str]:
    condition = status.condition(kind)
    assert condition is not None
    return condition.status.value, condition.reason


def running(attempts: int = 1, spec_: WorkItemResourceSpec | None = None, now: datetime = T0) -> WorkItemStatus:
    plan = core.plan(observe(spec=spec_ or spec(), now=now), TIMING)
    status = plan.status
    for _ in range(attempts - 1):
        status = fail(status, now=now)
        status = core.plan(observe(status, now=status.next_attempt_at or now, spec=spec_ or spec()), TIMING).status
    assert status.state is WorkState.RUNNING
    return status


def fail(status: WorkItemStatus, now: datetime = T0, **job: Any) -> WorkItemStatus:
    observed = core.JobObservation(name=status.current_job or "", exists=True, started=True, failed=True, **job)
    return core.plan(observe(status, now=now, job=observed), TIMING).status


def test_a_new_item_is_accepted_and_started_when_a_slot_is_free() -> None:
    plan = step(observe())
    status = plan.status
    assert plan.transitions == [(None, WorkState.PENDING), (WorkState.PENDING, WorkState.RUNNING)]
    assert status.state is WorkState.RUNNING
    assert (status.attempts, status.total_attempts) == (1, 1)
    assert plan.create_job == core.JobRequest(1, f"{NAME}-a1", core.execution_id("uid-1", 1))
    assert status.current_job == f"{NAME}-a1"
    assert status.current_execution_id == status.latest_execution_id == plan.create_job.execution_id
    assert status.history[0].outcome is AttemptOutcome.RUNNING
    assert plan.wake_at == T0 + timedelta(seconds=600)  # the pod-start timeout
    assert [n.reason for n in plan.notes] == ["Accepted", "Started"]
    assert cond(status, ConditionType.RUNNING) == ("True", "JobRunning")
    assert cond(status, ConditionType.READY) == ("False", "Running")


def test_execution_ids_are_deterministic_per_uid_and_attempt() -> None:
    assert core.execution_id("uid-1", 1) == core.execution_id("uid-1", 1)
    assert len({core.execution_id("uid-1", 1), core.execution_id("uid-1", 2), core.execution_id("uid-2", 1)}) == 3


def test_not_before_desired_at() -> None:
    later = T0 + timedelta(hours=2)
    plan = step(observe(spec=spec(desiredAt=later.isoformat())))
    assert plan.state is WorkState.PENDING
    assert plan.create_job is None
    assert plan.wake_at == later
    assert cond(plan.status, ConditionType.WAITING) == ("True", "NotYetDue")
    assert step(observe(plan.status, now=later, spec=spec(desiredAt=later.isoformat()))).state is WorkState.RUNNING


def test_waits_for_a_slot() -> None:
    plan = step(observe(may_start=False))
    assert plan.state is WorkState.PENDING and plan.wants_slot and plan.create_job is None
    assert cond(plan.status, ConditionType.WAITING) == ("True", "ConcurrencyLimit")
    assert core.plan(observe(plan.status, may_start=True), TIMING).create_job is not None  # due, given a slot


def test_default_backoff_is_five_minutes_after_a_503() -> None:
    status = running()
    message = "SourceUnavailable: FINRA API answered 503 Service Unavailable after 3 tries"
    plan = core.plan(
        observe(
            status,
            job=core.JobObservation(
                name=status.current_job or "",
                exists=True,
                started=True,
                failed=True,
                reason="BackoffLimitExceeded",
                exit_code=5,
                termination_message=message,
            ),
        ),
        TIMING,
    )
    assert plan.state is WorkState.RETRY_WAIT
    assert plan.status.next_attempt_at == T0 + timedelta(minutes=5)
    assert plan.status.last_error == f"exit code 5: {message}"
    assert plan.status.history[-1].outcome is AttemptOutcome.FAILED
    assert plan.status.history[-1].reason == core.JOB_FAILED
    assert plan.retries_scheduled == 1 and plan.wake_at == plan.status.next_attempt_at
    (note,) = plan.notes
    assert (note.type, note.reason) == ("Warning", "AttemptFailed")
    assert "attempt 1/3 failed" in note.message and "(in 300s)" in note.message
    assert cond(plan.status, ConditionType.WAITING) == ("True", "Backoff")
    assert step(observe(plan.status, now=T0 + timedelta(minutes=4))).state is WorkState.RETRY_WAIT
    woke = step(observe(plan.status, now=T0 + timedelta(minutes=5)))
    assert woke.transitions == [(WorkState.RETRY_WAIT, WorkState.PENDING), (WorkState.PENDING, WorkState.RUNNING)]
    assert woke.create_job is not None and woke.create_job.name == f"{NAME}-a2"


def test_three_failures_wait_60_then_120_seconds_then_fail() -> None:
    retry = {"backoffSeconds": 60}
    now = T0
    status = core.plan(observe(spec=spec(retry=retry), now=now), TIMING).status
    waits = []
    for _ in range(3):
        job = core.JobObservation(name=status.current_job or "", exists=True, started=True, failed=True, exit_code=5)
        status = core.plan(observe(status, spec=spec(retry=retry), now=now, job=job), TIMING).status
        if status.state is WorkState.RETRY_WAIT:
            assert status.next_attempt_at is not None
            waits.append((status.next_attempt_at - now).total_seconds())
            now = status.next_attempt_at
            status = core.plan(observe(status, spec=spec(retry=retry), now=now), TIMING).status
    assert waits == [60.0, 120.0]
    assert status.state is WorkState.FAILED
    assert (status.attempts, status.total_attempts, status.next_attempt_at) == (3, 3, None)
    assert [r.job for r in status.history] == [f"{NAME}-a1", f"{NAME}-a2", f"{NAME}-a3"]
    assert cond(status, ConditionType.FAILED) == ("True", core.JOB_FAILED)
    assert status.completed_at == now


def test_a_failure_no_retry_can_fix_fails_at_once() -> None:
    status = fail(running(), exit_code=InputFileError.exit_code, termination_message="bad header", retryable=False)
    assert status.state is WorkState.FAILED and status.attempts == 1


def test_the_job_adapter_reads_permanent_exit_codes_from_the_error_classes() -> None:
    view = JobView("j", "ns", "item", 1, "uid", True, False, True, "BackoffLimitExceeded", "")
    for code in (UsageError.exit_code, InputFileError.exit_code):
        assert not observe_job(view, "j", PodOutcome(code, "x", True)).retryable
    for code in (1, 3, 5, 137):
        assert observe_job(view, "j", PodOutcome(code, "x", True)).retryable


@pytest.mark.parametrize(
    ("job", "reason", "fragment"),
    [
        (core.JobObservation(name="j", exists=False), core.JOB_DELETED, "was deleted before it finished"),
        (
            core.JobObservation(name="j", exists=True, started=True, failed=True, reason="DeadlineExceeded"),
            core.DEADLINE_EXCEEDED,
            "exceeded activeDeadlineSeconds (3600s)",
        ),
    ],
)
def test_stuck_attempts_count_as_failures_with_a_reason(job: core.JobObservation, reason: str, fragment: str) -> None:
    status = running()
    plan = core.plan(observe(status, job=replace(job, name=status.current_job or "")), TIMING)
    assert plan.state is WorkState.RETRY_WAIT
    assert plan.status.history[-1].reason == reason
    assert fragment in (plan.status.last_error or "")


def test_pod_never_started_is_a_failed_attempt_and_its_job_is_deleted() -> None:
    status = running()
    job = core.JobObservation(name=status.current_job or "", exists=True)
    assert core.plan(observe(status, now=T0 + timedelta(seconds=599), job=job), TIMING).state is WorkState.RUNNING
    plan = core.plan(observe(status, now=T0 + timedelta(seconds=600), job=job), TIMING)
    assert plan.delete_job == status.current_job
    assert plan.status.history[-1].reason == core.POD_START_TIMEOUT
    assert "started within 600s" in (plan.status.last_error or "")


def test_a_started_job_the_job_controller_never_ends_is_stopped_after_its_deadline() -> None:
    status = running()
    job = core.JobObservation(name=status.current_job or "", exists=True, started=True)
    limit = T0 + timedelta(seconds=600 + 3600 + 300)
    running_plan = core.plan(observe(status, now=limit - timedelta(seconds=1), job=job), TIMING)
    assert running_plan.state is WorkState.RUNNING and running_plan.wake_at == limit
    plan = core.plan(observe(status, now=limit, job=job), TIMING)
    assert plan.delete_job == status.current_job
    assert plan.status.history[-1].reason == core.DEADLINE_EXCEEDED


def test_success_completes_and_asks_for_the_chain() -> None:
    status = running(spec_=spec(chain=True))
    job = core.JobObservation(
        name=status.current_job or "", exists=True, started=True, succeeded=True, capture_id="cap"
    )
    plan = step(observe(status, spec=spec(chain=True), now=T0 + timedelta(seconds=42), job=job))
    assert plan.state is WorkState.COMPLETE and plan.chain
    assert plan.status.capture_id == "cap"
    assert plan.status.current_execution_id is None
    assert plan.status.history[-1].outcome is AttemptOutcome.SUCCEEDED
    assert plan.notes[0].message == "attempt 1/3 succeeded in 42s; capture cap"
    assert cond(plan.status, ConditionType.READY) == ("True", "Complete")


def test_cancel_deletes_the_running_job() -> None:
    status = running()
    plan = step(observe(status, spec=spec(cancel=True)))
    assert plan.state is WorkState.CANCELLED
    assert plan.delete_job == status.current_job
    assert plan.status.history[-1].outcome is AttemptOutcome.CANCELLED
    assert step(observe(WorkItemStatus(), spec=spec(cancel=True))).state is WorkState.CANCELLED


def test_admin_retry_reopens_failed_with_a_fresh_budget_and_new_job_names() -> None:
    status = fail(running(), exit_code=2, retryable=False)
    assert status.state is WorkState.FAILED
    plan = step(observe(status, spec=spec(retryRequest=1)))
    assert plan.transitions[:2] == [(WorkState.FAILED, WorkState.PENDING), (WorkState.PENDING, WorkState.RUNNING)]
    assert (plan.status.attempts, plan.status.total_attempts) == (1, 2)
    assert plan.create_job is not None and plan.create_job.name == f"{NAME}-a2"  # never reuse a Job name
    assert plan.status.observed_retry_request == 1
    assert plan.notes[0].reason == "RetryRequested"


def test_admin_retry_is_ignored_while_running_and_reopens_a_cancelled_item() -> None:
    plan = step(observe(running(), spec=spec(retryRequest=1)))
    assert plan.state is WorkState.RUNNING and plan.notes[0].reason == "RetryIgnored"
    assert "can't retry" in plan.notes[0].message and "`spine work cancel " in plan.notes[0].message
    cancelled = core.plan(observe(spec=spec(cancel=True)), TIMING).status
    # `spine work retry` clears spec.cancel and raises retryRequest: the item runs again.
    reopened = core.plan(observe(cancelled, spec=spec(retryRequest=1), may_start=False), TIMING)
    assert reopened.transitions == [(WorkState.CANCELLED, WorkState.PENDING)]
    assert reopened.notes[0].reason == "RetryRequested" and reopened.status.completed_at is None
    # Raised by hand with spec.cancel still true, the cancel wins again: asked together, both end CANCELLED.
    again = core.plan(observe(cancelled, spec=spec(cancel=True, retryRequest=1)), TIMING)
    assert again.state is WorkState.CANCELLED and again.create_job is None


def test_wake_request_runs_a_retry_wait_item_now_and_is_ignored_otherwise() -> None:
    waiting = fail(running())
    assert waiting.state is WorkState.RETRY_WAIT and waiting.next_attempt_at == T0 + timedelta(minutes=5)
    woken = step(observe(waiting, spec=spec(wakeRequest=1)))
    assert woken.transitions[:2] == [(WorkState.RETRY_WAIT, WorkState.PENDING), (WorkState.PENDING, WorkState.RUNNING)]
    assert woken.notes[0].reason == "WakeRequested" and woken.status.attempts == 2
    assert woken.status.observed_wake_request == 1
    ignored = step(observe(woken.status, spec=spec(wakeRequest=2)))
    assert ignored.state is WorkState.RUNNING and ignored.notes[0].reason == "WakeIgnored"
    assert ignored.notes[0].message.startswith("can't wake finra.otc_transparency.ingest_week --week 2025-12-15")


def test_dismiss_request_moves_failed_to_cancelled_with_its_reason() -> None:
    failed = fail(running(), exit_code=2, retryable=False)
    plan = step(observe(failed, spec=spec(dismissRequest=1, dismissReason="a typo: week 9999")))
    assert plan.transitions == [(WorkState.FAILED, WorkState.CANCELLED)]
    assert (plan.status.reason, plan.status.message) == ("Dismissed", "dismissed: a typo: week 9999")
    assert cond(plan.status, ConditionType.READY) == ("False", "Dismissed")
    assert cond(plan.status, ConditionType.FAILED) == ("False", "NotFailed")
    refused = step(observe(running(), spec=spec(dismissRequest=1)))
    assert refused.state is WorkState.RUNNING and refused.notes[0].reason == "DismissIgnored"


def test_a_success_on_an_input_the_chain_replaced_meanwhile_runs_again() -> None:
    chained = spec(pipeline="finra.otc_transparency.normalize_week", params={"capture_id": "c1"}, chain=True)
    status = core.plan(observe(spec=chained, upstream="ingest-run-1"), TIMING).status
    assert status.history[-1].upstream_execution == "ingest-run-1"
    job = core.JobObservation(name=status.current_job or "", exists=True, started=True, succeeded=True, capture_id="c1")
    # The upstream ran again while this attempt ran: the chain pointed the item at its output.
    plan = core.plan(observe(status, spec=chained, upstream="ingest-run-2", job=job), TIMING)
    assert plan.transitions == [
        (WorkState.RUNNING, WorkState.COMPLETE),
        (WorkState.COMPLETE, WorkState.PENDING),
        (WorkState.PENDING, WorkState.RUNNING),  # at once, on the new input
    ]
    assert plan.chain is None  # a stale result is not chained onwards
    assert [n.reason for n in plan.notes] == ["Completed", "UpstreamChanged", "Started"]
    assert plan.status.attempts == 1 and plan.create_job is not None and plan.create_job.attempt == 2
    same = core.plan(observe(status, spec=chained, upstream="ingest-run-1", job=job), TIMING)
    assert same.state is WorkState.COMPLETE and same.chain is not None
    assert same.chain.pipeline == "finra.otc_transparency.compute_week"


def test_an_unknown_pipeline_fails_once_with_a_warning_and_stays_failed() -> None:
    error = "unknown pipeline 'finra.otc_transparency.nope'; known pipelines: …"
    plan = step(observe(pipeline_error=error))
    assert plan.state is WorkState.FAILED and plan.create_job is None
    assert [(n.type, n.reason) for n in plan.notes][-1] == ("Warning", core.UNKNOWN_PIPELINE)
    assert cond(plan.status, ConditionType.FAILED) == ("True", core.UNKNOWN_PIPELINE)
    again = core.plan(observe(plan.status, pipeline_error=error, now=T0 + timedelta(days=1)), TIMING)
    assert not again.changed and not again.notes  # no crash loop, no event storm


def test_an_invalid_spec_fails() -> None:
    plan = step(observe(spec=None, spec_error="spec.partition.tier: unknown tier 'X'"))
    assert plan.state is WorkState.FAILED
    assert cond(plan.status, ConditionType.FAILED)[1] == core.INVALID_SPEC


def test_a_refused_job_fails_the_attempt_without_retry() -> None:
    status = running()
    refused = core.JobObservation(name="j", exists=True, failed=True, reason=core.JOB_REJECTED, message="quota")
    assert core.plan(observe(status, job=refused), TIMING).state is WorkState.FAILED


def test_conditions_per_state() -> None:
    expectations = {
        WorkState.PENDING: ("False", "True", "True", "False"),
        WorkState.RUNNING: ("False", "True", "False", "False"),
    }
    for state, (ready, running_, waiting, failed) in expectations.items():
        status = core.plan(observe(may_start=state is WorkState.RUNNING), TIMING).status
        assert status.state is state
        values = [c.status.value for c in status.conditions]
        assert values == [ready, running_ if state is WorkState.RUNNING else "False", waiting, failed]
    for c in core.plan(observe(), TIMING).status.conditions:
        assert c.observed_generation == 1 and c.last_transition_time == T0
    assert ConditionStatus.TRUE.value == "True"
