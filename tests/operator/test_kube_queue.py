"""``spine work …`` on the kubernetes backend (``kube.workitems.KubernetesQueue``), on the API alone:
no operator is needed to enqueue, list, retry or cancel."""

from __future__ import annotations

import pytest

from market_spine.config import Settings
from market_spine.core.states import WorkState
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.errors import NotFound, UsageError
from market_spine.kube.workitems import KubernetesQueue
from tests.operator.harness import Namespace

INGEST = "finra.otc_transparency.ingest_week"


def queue(ns: Namespace) -> KubernetesQueue:
    return KubernetesQueue(Settings(namespace=ns.name, kubeconfig=ns.cluster.kubeconfig, backend="kubernetes"))


def spec(week: str = "2025-12-15", tier: str = "OTC", **extra: object) -> WorkItemSpec:
    data = {"pipeline": INGEST, "partition": {"week": week, "tier": tier}, "params": {"source": "finra-api"}}
    return WorkItemSpec.model_validate(data | extra)


def test_enqueue_is_idempotent(ns: Namespace) -> None:
    q = queue(ns)
    first = q.enqueue(spec())
    again = q.enqueue(spec(priority=7))
    assert first.created and not again.created
    assert first.name == again.name == spec().name
    assert again.state == "PENDING"
    (item,) = ns.items()
    assert item["spec"]["priority"] == 100


def test_list_filters_and_orders_like_the_local_queue(ns: Namespace) -> None:
    q = queue(ns)
    q.backfill([spec(week="2025-12-01", priority=25), spec(week="2025-12-08", priority=25), spec(priority=100)])
    listed = q.list()
    assert [i.priority for i in listed] == [100, 25, 25]
    assert listed[0].k8s_name == spec().name and listed[0].partition_key == spec().partition_key
    assert listed[0].state is WorkState.PENDING and (listed[0].attempt_count, listed[0].max_attempts) == (0, 3)
    assert q.list(states=[WorkState.FAILED]) == []
    assert len(q.list(pipeline=INGEST, limit=2)) == 2


def test_retry_and_cancel_follow_the_state_machine(ns: Namespace) -> None:
    q = queue(ns)
    q.enqueue(spec())
    partition = FinraPartition(week="2025-12-15", tier="OTC")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^can't retry .*: it is waiting to run already, with its attempts unused$"):
        q.retry(INGEST, partition)
    name = spec().name
    status_path = f"/apis/spine.marketspine.io/v1/namespaces/{ns.name}/spineworkitems/{name}/status"
    ns.api.merge_patch(status_path, {"status": {"state": "FAILED", "observedRetryRequest": 4, "attempts": 3}})
    retried = q.retry(INGEST, partition)
    assert retried.state is WorkState.PENDING and retried.attempt_count == 0
    assert ns.item(name)["spec"]["retryRequest"] == 5  # above what the operator has seen
    # No operator here: the object's status still says FAILED, but what was asked counts, as on
    # the local backend (retry, then cancel, is allowed and ends CANCELLED).
    assert ns.status(name).state is WorkState.FAILED
    assert q.get(INGEST, partition).state is WorkState.PENDING
    cancelled = q.cancel(INGEST, partition)
    assert cancelled.state is WorkState.CANCELLED
    assert ns.item(name)["spec"]["cancel"] is True
    # A retry re-opens a CANCELLED item: it clears spec.cancel and asks for a retry once more.
    reopened = q.retry(INGEST, partition)
    assert reopened.state is WorkState.PENDING
    assert ns.item(name)["spec"]["cancel"] is False and ns.item(name)["spec"]["retryRequest"] == 6
    with pytest.raises(UsageError, match=r"^can't wake .*: it is not waiting for a retry; it runs as soon as"):
        q.wake(INGEST, partition)
    with pytest.raises(UsageError, match=r"^can't dismiss .*: only a FAILED item can be; it has not failed"):
        q.dismiss(INGEST, partition, "typo")
    with pytest.raises(NotFound):
        q.retry(INGEST, FinraPartition(week="2025-12-08", tier="OTC"))  # type: ignore[arg-type]
