"""Test harness for the operator: a Kubernetes API (a real API server, or the emulator), the real
operator started in-process, a controllable clock, and a stand-in for the kubelet (and, on the
emulator only, for the Job controller).

Everything the tests do goes through the Kubernetes API, as a user or a controller would: create
work items, read their status and Events, and report pods running or terminated through the
``/status`` subresource as a kubelet does. On a real API server the real Job controller turns that
into Job status; on the emulator the harness writes what the Job controller would (1.33+ API
servers validate those writes, so they follow the real controller's order). The tests are the
same on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client import Configuration

from market_spine.config import Settings
from market_spine.core.resource import LABEL_WORK_ITEM, WorkItemStatus, manifest
from market_spine.core.workitem import WorkItemSpec
from market_spine.kube import client as kube
from market_spine.kube.client import KubeClient
from market_spine.operator.reconciler import ReconcilerOptions
from market_spine.operator.runner import Runtime, build_runtime, kopf_settings, run_async
from tests.support.k8s import RealCluster
from tests.support.kubelet import Exit, ProcessKubelet

T0 = datetime(2025, 12, 16, 10, 30, tzinfo=UTC)


class FakeClock:
    """The operator's clock in tests: starts at ``T0`` and moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    """The Kubernetes API of the tests, seen through the product's own client."""

    configuration: Configuration
    kubeconfig: Path
    emulator: Any = None  # an EmulatorThread, or None on a real API server
    server: RealCluster | None = None  # the real API server, its admin client and its kubelet

    def __post_init__(self) -> None:
        self.api = KubeClient(self.configuration)

    @property
    def real(self) -> bool:
        return self.emulator is None

    @property
    def kubelet(self) -> ProcessKubelet:
        assert self.server is not None, "only a real API server has a kubelet"
        return self.server.kubelet

    def create_namespace(self) -> str:
        if self.server is not None:
            return self.server.create_namespace()
        name = f"spine-test-{secrets.token_hex(4)}"
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def delete_namespace(self, name: str) -> None:
        if self.server is not None:
            self.server.delete_namespace(name)
            return
        with contextlib.suppress(kube.KubeError):
            self.api.delete(f"/api/v1/namespaces/{name}")


@dataclass
class Namespace:
    """One test's namespace, with helpers to read and write what is in it."""

    cluster: Cluster
    name: str

    @property
    def api(self) -> KubeClient:
        return self.cluster.api

    # --- work items -------------------------------------------------------------------------

    def enqueue(self, spec: WorkItemSpec, **extra: Any) -> str:
        body = manifest(spec, self.name, **extra)
        self.api.create(kube.swi_path(self.name), body)
        return spec.name

    def item(self, name: str) -> dict[str, Any]:
        return self.api.get(kube.swi_path(self.name, name))

    def status(self, name: str) -> WorkItemStatus:
        return WorkItemStatus.model_validate(self.item(name).get("status") or {})

    def items(self) -> list[dict[str, Any]]:
        return self.api.list(kube.swi_path(self.name))

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.api.merge_patch(kube.swi_path(self.name, name), {"spec": spec})

    def wait_state(self, name: str, state: str, timeout: float = 20.0, attempts: int | None = None) -> WorkItemStatus:
        def check() -> WorkItemStatus | None:
            status = self.status(name)
            if status.state == state and (attempts is None or status.attempts == attempts):
                return status
            return None

        result: WorkItemStatus = wait_for(check, timeout, f"{name} to be {state}")
        return result

    # --- jobs, pods, events -----------------------------------------------------------------

    def jobs(self, item: str | None = None) -> list[dict[str, Any]]:
        jobs = self.api.list(kube.job_path(self.name))
        if item is not None:
            jobs = [j for j in jobs if (j["metadata"].get("labels") or {}).get(LABEL_WORK_ITEM) == item]
        return sorted(jobs, key=lambda j: j["metadata"]["name"])

    def job(self, name: str) -> dict[str, Any]:
        return self.api.get(kube.job_path(self.name, name))

    def wait_job(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            try:
                return self.job(name)
            except kube.NotFoundError:
                return None

        job: dict[str, Any] = wait_for(check, timeout, f"Job {name}")
        return job

    def events(self, item: str) -> list[dict[str, Any]]:
        events = self.api.list(kube.events_path(self.name))
        mine = [e for e in events if (e.get("involvedObject") or {}).get("name") == item]
        return sorted(mine, key=lambda e: int(e["metadata"]["resourceVersion"]))  # creation order

    def event_reasons(self, item: str, wait_for_count: int = 0) -> list[str]:
        """The reasons of ``item``'s Events, in order (waiting until there are ``wait_for_count``:
        the operator posts Events in the background after each status write)."""
        if wait_for_count:
            wait_for(lambda: len(self.events(item)) >= wait_for_count, what=f"{wait_for_count} events of {item}")
        return [e["reason"] for e in self.events(item)]


def _stamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class JobController:
    """Plays the kubelet (and, on the emulator, the Job controller) for the operator's Jobs.

    On a real API server the real Job controller creates each Job's pod and owns the Job's
    status; this class only does what a kubelet does, through the process kubelet
    (``tests/support/kubelet.py``): bind the pod to the node, report its container running, then
    terminated with an exit code and a termination message — or really run its command
    (:meth:`run`). The Job controller then completes or fails the Job.

    On the emulator, which has no controllers, it also writes exactly what the Job controller
    writes: the pod with the Job's template and labels, and the Job's status with counters that
    never go down and the condition order the API server enforces (``SuccessCriteriaMet`` before
    ``Complete``, ``FailureTarget`` before ``Failed``), through the ``/status`` subresource.
    """

    ns: Namespace
    database_url: str = ""
    clock: FakeClock | None = None
    _pods: dict[str, Any] = field(default_factory=dict)

    @property
    def api(self) -> KubeClient:
        return self.ns.api

    @property
    def real(self) -> bool:
        return self.ns.cluster.real

    # --- the real Job controller: act on the pod it made ------------------------------------------

    def _real_pod(self, name: str) -> dict[str, Any]:
        if name not in self._pods:
            self._pods[name] = self.ns.cluster.kubelet.wait_pod(self.ns.name, name)
        pod: dict[str, Any] = self._pods[name]
        return pod

    def _wait_job(self, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            job = self.ns.job(name)
            return job if check(job.get("status") or {}) else None

        job: dict[str, Any] = wait_for(seen, 60, f"the Job controller to mark Job {name} {what}")
        return job

    # --- emulator: write what the Job controller writes ------------------------------------------

    def _job_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        assert not self.real, "the real Job controller owns Job status"
        return self.api.merge_patch(kube.job_path(self.ns.name, name) + "/status", {"status": status})

    def _pod_status(self, pod: str, status: dict[str, Any]) -> None:
        self.api.merge_patch(f"{kube.pods_path(self.ns.name)}/{pod}/status", {"status": status})

    def _pod(self, job: dict[str, Any]) -> str:
        name = job["metadata"]["name"]
        if name in self._pods:
            return str(self._pods[name])
        template = job["spec"]["template"]
        uid = job["metadata"]["uid"]
        labels = dict(template["metadata"].get("labels") or {})
        labels.update(
            {
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
                "batch.kubernetes.io/controller-uid": uid,
                "controller-uid": uid,
            }
        )
        pod = f"{name}-{secrets.token_hex(3)}"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "namespace": self.ns.name,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": dict(template["spec"]),
        }
        self.api.create(kube.pods_path(self.ns.name), body)
        self._pods[name] = pod
        return pod

    def _container(self, job: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": f"docker-pullable://{container['image']}",
            "ready": "running" in state,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    # --- what the tests call --------------------------------------------------------------------

    def start(self, name: str) -> dict[str, Any]:
        """The pod is scheduled and its container runs."""
        job = self.ns.wait_job(name)
        if self.real:
            self.ns.cluster.kubelet.start_pod(self._real_pod(name))
            return self._wait_job(name, lambda s: bool(s.get("ready") or s.get("active")), "active")
        pod = self._pod(job)
        now = _stamp()
        self._pod_status(
            pod,
            {
                "phase": "Running",
                "startTime": now,
                "containerStatuses": [self._container(job, {"running": {"startedAt": now}})],
            },
        )
        return self._job_status(name, {"startTime": now, "active": 1, "ready": 1, "terminating": 0})

    def _started(self, name: str) -> dict[str, Any]:
        job = self.ns.wait_job(name)
        if self.real:
            if not self._real_pod(name)["spec"].get("nodeName"):
                self.start(name)
            return job
        if not (job.get("status") or {}).get("startTime"):
            job = self.start(name)
        return job

    def succeed(self, name: str, message: str = "") -> dict[str, Any]:
        job = self._started(name)
        if self.real:
            self.ns.cluster.kubelet.finish_pod(self._real_pod(name), 0, message)
            return self._wait_job(name, lambda s: bool(s.get("completionTime")), "complete")
        pod = self._pod(job)
        now = _stamp()
        terminated = {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
        if message:
            terminated["message"] = message
        self._pod_status(
            pod,
            {
                "phase": "Succeeded",
                "containerStatuses": [self._container(job, {"terminated": terminated})],
            },
        )
        met = {
            "type": "SuccessCriteriaMet",
            "status": "True",
            "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods",
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
        self._job_status(
            name,
            {
                "active": 0,
                "ready": 0,
                "succeeded": 1,
                "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [met],
            },
        )
        complete = dict(met, type="Complete")
        return self._job_status(name, {"completionTime": now, "conditions": [met, complete]})

    def fail(
        self,
        name: str,
        message: str = "pipeline failed",
        exit_code: int = 1,
        reason: str = "BackoffLimitExceeded",
    ) -> dict[str, Any]:
        """The container exits non-zero; the Job fails (backoffLimit 0), or hits its deadline."""
        job = self._started(name)
        if self.real:
            assert reason == "BackoffLimitExceeded", "on a real cluster only the Job controller decides a deadline"
            self.ns.cluster.kubelet.finish_pod(self._real_pod(name), exit_code, message)
            return self._wait_job(name, _failed, "failed")
        pod = self._pod(job)
        now = _stamp()
        container_reason = "DeadlineExceeded" if reason == "DeadlineExceeded" else "Error"
        terminated = {
            "exitCode": exit_code,
            "reason": container_reason,
            "message": message,
            "startedAt": now,
            "finishedAt": now,
        }
        self._pod_status(
            pod, {"phase": "Failed", "containerStatuses": [self._container(job, {"terminated": terminated})]}
        )
        text = (
            "Job was active longer than specified deadline"
            if reason == "DeadlineExceeded"
            else "Job has reached the specified backoff limit"
        )
        target = {
            "type": "FailureTarget",
            "status": "True",
            "reason": reason,
            "message": text,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
        self._job_status(
            name,
            {
                "active": 0,
                "ready": 0,
                "failed": 1,
                "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [target],
            },
        )
        failed = dict(target, type="Failed")
        return self._job_status(name, {"conditions": [target, failed]})

    def deadline_exceeded(self, name: str) -> dict[str, Any]:
        """The attempt outlives the Job's ``activeDeadlineSeconds``. On a real cluster the Job
        controller ends it when the deadline comes (the test sets a short one) and the kubelet
        stops the process; on the emulator this writes what that leaves behind."""
        if self.real:
            self._started(name)
            return self._wait_job(name, _failed, "failed (DeadlineExceeded)")
        return self.fail(name, message="", exit_code=137, reason="DeadlineExceeded")

    def run(self, name: str) -> int:
        """Run the Job's container command for real against the test database, then report the
        outcome as the cluster would. Returns the exit code."""
        if self.real:
            self._secret()
            self.ns.wait_job(name)
            code = self.ns.cluster.kubelet.execute(self._real_pod(name))
            self._wait_job(name, lambda s: bool(s.get("completionTime")) or _failed(s), "finished")
            return code
        from market_spine.cli import context
        from market_spine.cli.main import run_cli

        job = self.start(name)
        container = job["spec"]["template"]["spec"]["containers"][0]
        command = container["command"]
        assert command[:2] == ["spine", "run"], command
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        env["SPINE_DATABASE_URL"] = self.database_url  # what the Secret holds
        out = io.StringIO()
        with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            context.reset()
            try:
                code = run_cli(command[1:])
            finally:
                context.reset()
        logs = out.getvalue().strip()
        if code == 0:
            self.succeed(name)
        else:
            # FallbackToLogsOnError: the termination message is the tail of the log.
            self.fail(name, message="\n".join(logs.splitlines()[-80:])[-2048:] or f"exit {code}", exit_code=code)
        return code

    def _secret(self) -> None:
        """The Secret pipeline Jobs read the database URL from (``SPINE_DATABASE_SECRET``)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "market-spine-db"},
            "stringData": {"url": self.database_url},
        }
        with contextlib.suppress(kube.AlreadyExistsError):
            self.api.create(f"/api/v1/namespaces/{self.ns.name}/secrets", body)

    def succeed_all(self, count: int, timeout: float = 300.0) -> None:
        """Make each of the next ``count`` Jobs succeed as it comes (a burst): on a real cluster
        the kubelet reports every new pod's container exiting 0 and the Job controller completes
        the Jobs; on the emulator each Job is succeeded in turn."""
        if self.real:
            self.ns.cluster.kubelet.serve(self.ns.name, lambda _pod: Exit(0))
            wait_for(
                lambda: sum(bool((j.get("status") or {}).get("completionTime")) for j in self.ns.jobs()) >= count,
                timeout,
                f"{count} Jobs completed by the Job controller",
                interval=0.5,
            )
            return
        finished: set[str] = set()

        def play() -> bool:
            for job in self.ns.jobs():
                name = job["metadata"]["name"]
                if name not in finished:
                    self.succeed(name)
                    finished.add(name)
            return len(finished) >= count

        wait_for(play, timeout, f"{count} Jobs", interval=0.1)

    def today(self) -> date:
        """The capture day of a pipeline run now: the process kubelet runs it on the real clock;
        on the emulator it runs in this process, on the test's clock."""
        if self.real or self.clock is None:
            return datetime.now(UTC).date()
        return self.clock().date()

    def command(self, name: str) -> str:
        job = self.ns.job(name)
        return shlex.join(job["spec"]["template"]["spec"]["containers"][0]["command"])


def _failed(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Failed" and c.get("status") == "True" for c in status.get("conditions") or [])


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class OperatorProcess:
    """The real operator (``runner.run_async``) in a thread of this process, with its own loop."""

    def __init__(
        self,
        settings: Settings,
        configuration: Configuration,
        clock: FakeClock,
        options: ReconcilerOptions | None = None,
        pipeline_error: Callable[[str], str | None] | None = None,
        metrics_port: int | None = None,
        health_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.metrics_port = metrics_port
        self.health_port = health_port
        self.configuration = configuration
        self.clock = clock
        self.options = options or ReconcilerOptions(workers=4, tick=0.02)
        self.pipeline_error = pipeline_error
        self.runtime: Runtime | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="spine-operator", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            kwargs: dict[str, Any] = {}
            if self.pipeline_error is not None:
                kwargs["pipeline_error"] = self.pipeline_error
            runtime = build_runtime(
                self.settings,
                clock=self.clock,
                configuration=self.configuration,
                options=self.options,
                db_retry_delays=(0.05, 0.1, 0.2),
                **kwargs,
            )
            self.runtime = runtime
            config = kopf_settings(self.settings)
            config.watching.reconnect_backoff = 0.1
            # Kopf retries discovery requests that the stop itself interrupts; keep that short.
            config.networking.error_backoffs = [0.05, 0.1, 0.2]
            config.scanning.disabled = True
            asyncio.run(
                run_async(
                    self.settings,
                    runtime=runtime,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    metrics_port=self.metrics_port,
                    health_port=self.health_port,
                    kopf_config=config,
                )
            )
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise

    def start(self) -> OperatorProcess:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the operator did not start within 30s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the operator did not stop"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        assert self.runtime is not None
        value = self.runtime.metrics.registry.get_sample_value(name, labels or {})
        return float(value or 0.0)
