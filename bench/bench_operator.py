"""The operator under load: 1,000 SpineWorkItems → 1,000 Jobs, and its memory with 10,000 items.

Run by ``python -m bench`` (``make bench``), or ``python -m bench.bench_operator [--items N]
[--rss-items N]``. The Kubernetes API is a real kube-apiserver started from ``KUBEBUILDER_ASSETS``
(the Makefile sets it from ../shared/k8s), else the cluster named by ``SPINE_TEST_KUBECONFIG``, else
(saying so) the KMock-based emulator of the test suite in a process of its own; the operator
runs in its own process too (``spine operator run``'s code, with an embedded PostgreSQL for its
mirror), so its memory is its own. Figures, all from the same run:

- baseline: a raw client (the same HTTP client the operator uses) creating N Jobs one after
  another against the same API;
- the operator end to end: N work items created the same way, until every one has its Job and its
  status RUNNING written; the rate as a ratio to the baseline (target ≥ 0.5), and the latency from
  creating a work item to seeing its Job (p50, p99);
- peak RSS (VmHWM) of the operator process that reconciles 10,000 work items (target ≤ 200 MB):
  the initial burst of creations, every status written, the database mirror caught up;
- what bounds the rate: the CPU time per item of the API server and etcd, of the operator and of
  this client during each run, read from /proc. On a machine whose cores all serve one run, no
  rate can exceed cores ÷ the CPU seconds an item costs in total: the ceiling printed. (The raw
  client is one thread waiting on each answer: latency-bound, below its own CPU ceiling.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from market_spine.core.partitions import Tier
from market_spine.core.resource import manifest
from market_spine.core.workitem import FinraPartition, WorkItemSpec
from market_spine.kube import client as kube
from market_spine.kube.client import KubeClient, load_configuration

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
TARGET_RSS_MB = 200.0


def _kubeconfig(path: Path, server: str) -> Path:
    from tests.operator.emulator import write_kubeconfig

    return write_kubeconfig(path, server)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by these processes (``/proc/PID/stat``, fields 14-15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextmanager
def kubernetes_api(folder: Path) -> Iterator[tuple[Path, str, list[int]]]:
    """(kubeconfig, what it is, the pids of its server processes when local) of the API server to
    measure against: a real kube-apiserver from ``KUBEBUILDER_ASSETS`` (etcd and kube-apiserver
    only: no Job controller, so the Jobs stay as created and the machine's cores go to the API
    server and the operator), else the cluster named by ``SPINE_TEST_KUBECONFIG``, else the KMock
    emulator in a process of its own."""
    sys.path.insert(0, str(ROOT))
    from tests.support import envtest

    binaries = envtest.assets()
    if binaries is not None:
        with envtest.ControlPlane(binaries, folder / "envtest").start(controllers=False) as plane:
            where = f"a real kube-apiserver {plane.version()} (KUBEBUILDER_ASSETS)"
            yield plane.kubeconfig, where, list(plane.pids().values())
        return
    real = os.environ.get("SPINE_TEST_KUBECONFIG")
    if real:
        yield Path(real), "the cluster of SPINE_TEST_KUBECONFIG", []
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.operator.emulator"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the API emulator did not start")
        where = "the API emulator (no KUBEBUILDER_ASSETS: not a real server)"
        yield _kubeconfig(folder / "kubeconfig", url), where, [process.pid]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def specs(count: int) -> list[WorkItemSpec]:
    weeks = [date(2025, 12, 15) - timedelta(weeks=n) for n in range(count // len(Tier) + 1)]  # Mondays
    items = [
        WorkItemSpec(
            pipeline="finra.otc_transparency.ingest_week",
            partition=FinraPartition(week=w, tier=t),
            params={"source": "finra-api"},
        )
        for w in weeks
        for t in Tier
    ]
    return items[:count]


def job_body(namespace: str, index: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"raw-{index}", "namespace": namespace, "labels": {"app": "raw-bench"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.example/none:0", "command": ["true"]}],
                }
            },
        },
    }
    return body


class Watcher:
    """Times, in this process, when each object of a watch stream is first seen in a given state."""

    def __init__(self, api: KubeClient, path: str, wanted: Callable[[dict[str, Any]], str | None]) -> None:
        # Its own connection pool: a watch holds its connection for as long as it streams.
        self.api = KubeClient(api.api.configuration)
        self.path = path
        self.wanted = wanted
        self.seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._response: Any = None

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._stream()
        except Exception:
            return

    def _stream(self) -> None:
        api = self.api.api
        verb, url, headers, body, post = api.param_serialize(
            method="GET", resource_path=self.path, query_params=[("watch", "true")],
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
        )  # fmt: skip
        response = api.call_api(verb, url, header_params=headers, body=body, post_params=post, _request_timeout=None)
        self._response = response.response
        buffer = b""
        for chunk in self._response.stream(65536, decode_content=True):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            now = time.monotonic()
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                key = self.wanted(obj)
                if key is not None and key not in self.seen:
                    self.seen[key] = now

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.seen) >= count:
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self._response is not None:
            self._response.shutdown()


def raw_baseline(api: KubeClient, namespace: str, count: int) -> float:
    """N Jobs, one after another, through the operator's own JSON client (no model classes)."""
    started = time.monotonic()
    for index in range(count):
        api.create(kube.job_path(namespace), job_body(namespace, index))
    return time.monotonic() - started


def library_baseline(api: KubeClient, namespace: str, count: int) -> float:
    """N Jobs, one after another, the way most scripts do it: the ``kubernetes`` library's typed API."""
    from kubernetes.client import BatchV1Api

    batch = BatchV1Api(api.api)
    started = time.monotonic()
    for index in range(count):
        body = job_body(namespace, index)
        body["metadata"]["name"] = f"lib-{index}"
        batch.create_namespaced_job(namespace, body)
    return time.monotonic() - started


@contextmanager
def operator_process(kubeconfig: Path, namespace: str, database_url: str, *, limit: int) -> Iterator[int]:
    """The operator, as ``spine operator run`` runs it, in its own process; yields its pid."""
    env = dict(os.environ)
    env.update({
        "SPINE_NAMESPACE": namespace,
        "SPINE_KUBECONFIG": str(kubeconfig),
        "SPINE_DATABASE_URL": database_url,
        "SPINE_BACKEND": "kubernetes",
        "SPINE_MAX_RUNNING": str(limit),
        "SPINE_MAX_RUNNING_PER_PIPELINE": str(limit),
        "SPINE_JOB_START_TIMEOUT_SECONDS": "86400",
        "SPINE_RESYNC_INTERVAL_SECONDS": "3600",
    })  # fmt: skip
    command = [sys.executable, "-m", "bench.bench_operator", "--child"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def child() -> None:
    """The operator process: the production runner without its HTTP endpoints."""
    import asyncio
    import logging

    from market_spine.config import load_settings
    from market_spine.operator.reconciler import ReconcilerOptions
    from market_spine.operator.runner import build_runtime, run_async

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("kopf", "asyncio"):  # Kopf's watch streams complain when SIGTERM ends them
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    settings = load_settings()
    runtime = build_runtime(settings, options=ReconcilerOptions())
    profile = os.environ.get("SPINE_BENCH_PROFILE")  # a file for cProfile stats of the event loop
    if profile:
        import cProfile

        cProfile.runctx(
            "asyncio.run(run_async(settings, runtime=runtime, metrics_port=None, health_port=None))",
            globals(), {"asyncio": asyncio, "run_async": run_async, "settings": settings, "runtime": runtime},
            profile,
        )  # fmt: skip
        return
    asyncio.run(run_async(settings, runtime=runtime, metrics_port=None, health_port=None))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _running(obj: dict[str, Any]) -> str | None:
    state = (obj.get("status") or {}).get("state")
    return (
        str(obj["metadata"]["name"])
        if state in ("RUNNING", "PENDING") and obj.get("status", {}).get("observedGeneration")
        else None
    )


def _started(obj: dict[str, Any]) -> str | None:
    return str(obj["metadata"]["name"]) if (obj.get("status") or {}).get("state") == "RUNNING" else None


def _job_owner(obj: dict[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("spine.marketspine.io/work-item")


def _wait_operator_ready(api: KubeClient, namespace: str, timeout: float = 60.0) -> None:
    """Create one work item and wait for its status: the operator is then watching."""
    probe = manifest(specs(1)[0], namespace)
    probe["metadata"]["name"] = "bench-probe"
    probe["spec"]["desiredAt"] = "2099-01-01T00:00:00Z"
    api.create(kube.swi_path(namespace), probe)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (api.get(kube.swi_path(namespace, "bench-probe")).get("status") or {}).get("state"):
            api.delete(kube.swi_path(namespace, "bench-probe"))
            return
        time.sleep(0.1)
    raise RuntimeError("the operator did not start")


def end_to_end(
    api: KubeClient, kubeconfig: Path, namespace: str, database_url: str, count: int, servers: list[int]
) -> dict[str, float]:
    items = specs(count)
    with operator_process(kubeconfig, namespace, database_url, limit=count) as pid:
        _wait_operator_ready(api, namespace)
        jobs = Watcher(api, kube.job_path(namespace), _job_owner).start()
        statuses = Watcher(api, kube.swi_path(namespace), _started).start()
        time.sleep(0.5)  # both watch streams are open
        created: dict[str, float] = {}
        server_cpu, operator_cpu, own_cpu = cpu_seconds(servers), cpu_seconds([pid]), time.process_time()
        started = time.monotonic()
        for spec in items:
            created[spec.name] = time.monotonic()
            api.create(kube.swi_path(namespace), manifest(spec, namespace))
        done = jobs.wait(count, 600) and statuses.wait(count, 600)
        finished = max([*jobs.seen.values(), *statuses.seen.values()], default=time.monotonic())
        server_cpu, operator_cpu = cpu_seconds(servers) - server_cpu, cpu_seconds([pid]) - operator_cpu
        own_cpu = time.process_time() - own_cpu
        jobs.stop()
        statuses.stop()
    if not done:
        raise RuntimeError(f"only {len(jobs.seen)} Jobs and {len(statuses.seen)} RUNNING statuses of {count}")
    latencies = sorted((jobs.seen[name] - created[name]) * 1000 for name in created)
    return {
        "seconds": finished - started,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "server_cpu_ms": server_cpu * 1000 / count,
        "operator_cpu_ms": operator_cpu * 1000 / count,
        "client_cpu_ms": own_cpu * 1000 / count,
    }


def memory(api: KubeClient, kubeconfig: Path, namespace: str, database_url: str, count: int) -> dict[str, float]:
    """Peak RSS of the operator with ``count`` work items: created while it runs, each one
    reconciled (10 RUNNING, the rest waiting for a slot, every status written), then a resync."""
    items = specs(count)
    with operator_process(kubeconfig, namespace, database_url, limit=10) as pid:
        _wait_operator_ready(api, namespace)
        statuses = Watcher(api, kube.swi_path(namespace), _running).start()
        time.sleep(0.5)
        started = time.monotonic()
        for spec in items:
            api.create(kube.swi_path(namespace), manifest(spec, namespace))
        done = statuses.wait(count, 1800)
        settled = time.monotonic() - started
        time.sleep(3)  # the database mirror and the Events catch up
        peak = peak_rss_mb(pid)
        statuses.stop()
    if not done:
        raise RuntimeError(f"only {len(statuses.seen)} of {count} work items got a status")
    return {"peak_rss_mb": peak, "seconds": settled}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_operator")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rss-items", type=int, default=10000, help="0 to skip the memory run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.child:
        child()
        return
    from bench.bench_ingest import throwaway_postgres  # not in the operator process: its RSS is measured

    count = args.items
    with (
        tempfile.TemporaryDirectory(prefix="spine-bench-op-") as folder,
        kubernetes_api(Path(folder)) as (kubeconfig, where, servers),
        throwaway_postgres() as engine,
    ):
        database_url = engine.url.render_as_string(hide_password=False)
        api = KubeClient(load_configuration(kubeconfig))
        from tests.support.k8s import apply_crd

        apply_crd(api)
        namespaces = [f"spine-bench-{secrets.token_hex(3)}" for _ in range(4)]
        for name in namespaces:
            api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        try:
            before, own = cpu_seconds(servers), time.process_time()
            raw = raw_baseline(api, namespaces[0], count)
            raw_server_ms = (cpu_seconds(servers) - before) * 1000 / count
            raw_client_ms = (time.process_time() - own) * 1000 / count
            library = library_baseline(api, namespaces[3], count)
            result = end_to_end(api, kubeconfig, namespaces[1], database_url, count, servers)
            raw_rate, library_rate, op_rate = count / raw, count / library, count / result["seconds"]
            took = result["seconds"]
            print(f"operator bench on {where}, {count} work items")
            print(f"  raw client, JSON (the operator's HTTP path): {count} Jobs in {raw:.2f}s ({raw_rate:.0f}/s)")
            print(f"  raw client, kubernetes library typed API: {count} Jobs in {library:.2f}s ({library_rate:.0f}/s)")
            print(f"  operator: {count} work items → Jobs + RUNNING status in {took:.2f}s ({op_rate:.0f}/s)")
            for label, rate in (("JSON client", raw_rate), ("library client", library_rate)):
                ratio = op_rate / rate
                verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
                print(f"  ratio operator / raw {label}: {ratio:.2f} ({verdict} the ≥ {TARGET_RATIO} target)")
            print(f"  create → Job latency: p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms")
            if servers:
                raw_total = raw_server_ms + raw_client_ms
                op_total = result["server_cpu_ms"] + result["operator_cpu_ms"] + result["client_cpu_ms"]
                print(
                    f"  CPU per item, raw run: API server + etcd {raw_server_ms:.2f} ms, client {raw_client_ms:.2f} ms"
                    f" (total {raw_total:.2f} ms)"
                )
                print(
                    f"  CPU per item, operator run: API server + etcd {result['server_cpu_ms']:.2f} ms, "
                    f"operator {result['operator_cpu_ms']:.2f} ms, client {result['client_cpu_ms']:.2f} ms "
                    f"(total {op_total:.2f} ms)"
                )
                cores = os.cpu_count() or 1
                ceiling = cores * 1000 / op_total  # items/s if every core did nothing but this run
                print(
                    f"  CPU-bound ceiling on {cores} cores: {ceiling:.0f} items/s (cores ÷ CPU per item), "
                    f"a ratio of {ceiling / raw_rate:.2f} to the raw JSON client; measured {op_rate:.0f}/s"
                )
            if args.rss_items:
                rss = memory(api, kubeconfig, namespaces[2], database_url, args.rss_items)
                verdict = "meets" if rss["peak_rss_mb"] <= TARGET_RSS_MB else "MISSES"
                print(
                    f"  peak operator RSS with {args.rss_items} work items: {rss['peak_rss_mb']:.0f} MB "
                    f"({verdict} the ≤ {TARGET_RSS_MB:.0f} MB target; all reconciled in {rss['seconds']:.0f}s)"
                )
        finally:
            for name in namespaces:
                with contextlib.suppress(kube.KubeError):
                    api.delete(f"/api/v1/namespaces/{name}")


if __name__ == "__main__":
    main(sys.argv[1:])
