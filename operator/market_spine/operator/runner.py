"""Running the operator: ``spine operator run`` calls :func:`run`; tests and benchmarks call
:func:`run_async` with their own clock, stop flag and ports.

One run wires the parts together: the Kubernetes credentials (shared by Kopf and the reconciler's
API client), the PostgreSQL mirror (``dbsync``; PostgreSQL may be down at start-up), the
reconciler and its workers, the Kopf handlers, the periodic resync, the Prometheus endpoint
(``:9102/metrics``) and Kopf's liveness endpoint (``:8080/healthz``). With ``SPINE_PEERING`` set,
replicas coordinate through Kopf peering: each replica gets a random priority (or
``SPINE_PEERING_PRIORITY``), the highest one reconciles and the others stand by (paused) until it
is gone; ``operator.peering`` holds the reconciler's own workers to the same decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client import Configuration
from sqlalchemy import Engine

from market_spine.config import Settings
from market_spine.core.resource import GROUP
from market_spine.db.engine import make_engine, resolve_url
from market_spine.errors import UsageError
from market_spine.kube.client import KubeClient, load_configuration
from market_spine.operator.dbsync import RETRY_DELAYS, DbSync
from market_spine.operator.handlers import OUR_JOBS, build_registry
from market_spine.operator.metrics import Metrics
from market_spine.operator.peering import PeeringGate
from market_spine.operator.reconciler import Clock, Reconciler, ReconcilerOptions
from market_spine.services.doctor import DoctorOptions
from market_spine.services.doctor import check as check_gaps

log = logging.getLogger(__name__)

GapProbe = Callable[[], Mapping[str, int]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def registry_pipeline_error(name: str) -> str | None:
    """None if ``name`` is a registered pipeline, else the registry's message (listing the known ones)."""
    from market_spine.pipelines.registry import get_pipeline

    try:
        get_pipeline(name)
    except UsageError as exc:
        return str(exc)
    return None


def connection_info(configuration: Configuration) -> kopf.ConnectionInfo:
    """Kopf's credentials from the ``kubernetes`` client's configuration (as ``kopf.login_via_client``)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: the operator's handlers are event watchers and indexes only, which never ask
    what changed. Kopf would otherwise deep-copy every object on every event (status included) to
    build a diff-base nobody reads; with thousands of work items that is most of its CPU."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings(settings: Settings, *, priority: int = 0) -> kopf.OperatorSettings:
    """Kopf's settings for a long-running operator."""
    cfg = kopf.OperatorSettings()
    # Resilient watches: the API server ends each watch after server_timeout, the client gives up
    # on a silent connection after client_timeout, and a stream with no event (not even a
    # bookmark) for inactivity_timeout is considered stalled and re-opened (Kopf ≥ 1.40).
    cfg.watching.server_timeout = 300
    cfg.watching.client_timeout = 330
    cfg.watching.connect_timeout = 30
    cfg.watching.inactivity_timeout = 70
    cfg.watching.reconnect_backoff = 1.0
    # Server-side filtering of the Jobs watch (the handlers filter by the same labels, too).
    cfg.watching.label_selectors["batch", "v1", "jobs"] = ",".join(f"{k}={v}" for k, v in OUR_JOBS.items())
    cfg.networking.request_timeout = 60
    cfg.networking.connect_timeout = 15
    # The reconciler posts its own Events; Kopf only posts its warnings and errors.
    cfg.posting.level = logging.WARNING
    cfg.posting.reporting_component = "market-spine-operator"
    cfg.posting.reporting_instance = os.environ.get("POD_ID", socket.gethostname())
    # The handlers are event watchers and never store progress or diff-bases on objects (all state
    # is in status, written by the reconciler). Should a change-detecting handler ever be added,
    # swap NoDiffBase for kopf.AnnotationsDiffBaseStorage(prefix=GROUP); progress goes under our prefix.
    cfg.persistence.finalizer = f"{GROUP}/finalizer"
    cfg.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    cfg.persistence.diffbase_storage = NoDiffBase()
    cfg.peering.priority = priority
    cfg.peering.stealth = True
    return cfg


@dataclass
class Runtime:
    """Everything one operator run owns (exposed to tests and benchmarks)."""

    settings: Settings
    reconciler: Reconciler
    dbsync: DbSync
    metrics: Metrics
    client: KubeClient
    engine: Engine
    configuration: Configuration
    executors: list[ThreadPoolExecutor] = field(default_factory=list)

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()
        self.engine.dispose()


def build_runtime(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    configuration: Configuration | None = None,
    engine: Engine | None = None,
    options: ReconcilerOptions | None = None,
    pipeline_error: Callable[[str], str | None] = registry_pipeline_error,
    db_retry_delays: tuple[float, ...] | None = None,
) -> Runtime:
    options = options or ReconcilerOptions()
    configuration = configuration or load_configuration(settings.kubeconfig)
    client = KubeClient(configuration, pool_size=options.workers * 2 + options.event_workers + 4)
    if engine is None:
        # No connection check: the operator starts (and reconciles) while PostgreSQL is down.
        url = resolve_url(settings.database_url, settings.data_dir)
        engine = make_engine(url, connect_timeout=settings.db_connect_timeout)
    api_executor = ThreadPoolExecutor(options.workers * 2 + options.event_workers, thread_name_prefix="spine-api")
    db_executor = ThreadPoolExecutor(2, thread_name_prefix="spine-db")
    metrics = Metrics()
    dbsync = DbSync(engine, metrics=metrics, executor=db_executor, retry_delays=db_retry_delays or RETRY_DELAYS)
    reconciler = Reconciler(
        settings=settings,
        client=client,
        dbsync=dbsync,
        metrics=metrics,
        clock=clock,
        api_executor=api_executor,
        db_executor=db_executor,
        # The pod's name in a cluster (the chart sets POD_ID); else unique per process, so two
        # replicas on one host are two peers.
        identity=os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}",
        pipeline_error=pipeline_error,
        options=options,
    )
    metrics.watch_work_items(reconciler.state_counts, lambda: ())
    return Runtime(
        settings=settings,
        reconciler=reconciler,
        dbsync=dbsync,
        metrics=metrics,
        client=client,
        engine=engine,
        configuration=configuration,
        executors=[api_executor, db_executor],
    )


async def _resync_forever(runtime: Runtime) -> None:
    """Once the caches are filled, and then every resync interval: repair the database mirror."""
    await runtime.reconciler.synced.wait()
    while True:
        count = runtime.reconciler.resync()
        log.debug("resync: %d work item(s) re-recorded", count)
        await asyncio.sleep(runtime.settings.resync_interval_seconds)


async def _probe_gaps_forever(runtime: Runtime, probe: GapProbe, interval: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            gaps = await loop.run_in_executor(runtime.executors[-1], probe)
            for domain, count in gaps.items():
                runtime.metrics.partition_gaps.labels(domain).set(count)
        except Exception:
            log.exception("the partition gap probe failed")
        await asyncio.sleep(interval)


async def run_async(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
    metrics_port: int | None = -1,
    health_port: int | None = -1,
    kopf_config: kopf.OperatorSettings | None = None,
    gap_probe: GapProbe | None = None,
    gap_probe_interval: float = 900.0,
    on_started: Callable[[Runtime], None] | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or SIGTERM/SIGINT in the main thread).

    ``metrics_port``/``health_port``: -1 = from ``settings``, None = do not serve.
    """
    runtime = runtime or build_runtime(settings)
    metrics_port = settings.metrics_port if metrics_port == -1 else metrics_port
    health_port = settings.health_port if health_port == -1 else health_port
    priority = 0
    if settings.peering:
        priority = settings.peering_priority or random.SystemRandom().randint(1, 2**31 - 1)
    config = kopf_config or kopf_settings(settings, priority=priority)
    if settings.peering:
        config.peering.priority = priority
    registry = build_registry(runtime.reconciler, login=lambda: connection_info(runtime.configuration))
    # Every long-lived task exists before Kopf starts (Kopf waits on exit for tasks created later).
    background: list[asyncio.Task[None]] = [
        *runtime.reconciler.start(),
        asyncio.create_task(runtime.dbsync.run(), name="spine database mirror"),
        asyncio.create_task(_resync_forever(runtime), name="spine resync"),
    ]
    if settings.peering:
        # Stand by until the peering says this replica holds it (see operator.peering).
        runtime.reconciler.active.clear()
        gate = PeeringGate(
            runtime.client,
            namespace=settings.namespace,
            name=settings.peering,
            identity=runtime.reconciler.identity,
            priority=priority,
            active=runtime.reconciler.active,
            on_resume=runtime.reconciler.resync,
            clock=utcnow,
        )
        background.append(asyncio.create_task(gate.run(), name="spine peering gate"))
    if gap_probe is not None:
        background.append(asyncio.create_task(_probe_gaps_forever(runtime, gap_probe, gap_probe_interval)))
    stop_metrics = runtime.metrics.serve(metrics_port) if metrics_port else None
    if on_started is not None:
        on_started(runtime)
    log.info(
        "operator starting: namespace %s, %s, database mirror %s",
        settings.namespace,
        f"peering {settings.peering!r} (priority {priority})" if settings.peering else "standalone",
        runtime.engine.url.render_as_string(hide_password=True),
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=config,
            namespaces=[settings.namespace],
            clusterwide=False,
            standalone=None if settings.peering else True,
            peering_name=settings.peering,
            # Kopf's peer name and ours (Events, the peering gate) must be the same string.
            identity=cast("Any", runtime.reconciler.identity) if settings.peering else None,
            liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        # Write what the mirror still holds (PostgreSQL may be down: then the next start's
        # resync rewrites it from the objects' status).
        await runtime.dbsync.wait_idle(timeout=5.0)
        for task in background:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*background, return_exceptions=True)
        if stop_metrics is not None:
            stop_metrics()
        runtime.close()


def doctor_gap_probe(engine: Engine, settings: Settings) -> GapProbe:
    """The doctor's check, as the operator's periodic probe behind ``market_spine_partition_gaps``
    (the series the chart's MarketSpinePartitionGaps alert watches): missing partitions over the
    ``gap_check_weeks`` newest weeks FINRA has published for each tier, on the same publication
    calendar and grace (``SPINE_PUBLICATION_GRACE_DAYS``) as ``spine doctor``."""
    options = DoctorOptions(
        weeks=settings.gap_check_weeks,
        grace_days=settings.publication_grace_days,
        stale_after_days=None,
    )

    def probe() -> Mapping[str, int]:
        report = check_gaps(engine, options, datetime.now(UTC).date())
        return {options.domain: len(report.missing)}

    return probe


def run(settings: Settings) -> None:
    """``spine operator run``: structured (JSON) logs, SIGTERM stops gracefully."""
    kopf.configure(log_format=kopf.LogFormat.JSON, verbose=False)
    logging.getLogger("market_spine").setLevel(logging.INFO)
    runtime = build_runtime(settings)
    asyncio.run(
        run_async(
            settings,
            runtime=runtime,
            gap_probe=doctor_gap_probe(runtime.engine, settings),
            gap_probe_interval=settings.gap_check_interval_seconds,
        )
    )
