"""The peering gate: the reconciler decides nothing while another replica holds the peering.

Called by ``operator.runner`` when ``SPINE_PEERING`` is set. Kopf's peering pauses Kopf's own
processing (its watch streams and handlers) while a live peer has a higher priority, but the
reconciler has workers, a queue and wake-up timers of its own that Kopf does not know about: a
replica that a higher-priority one pre-empts (half of all rolling updates) would go on acting on
its cached view. :class:`PeeringGate` reads the same KopfPeering object and applies Kopf's rule —
stand by while any other live peer has a priority at least ours, or while the object does not
exist (Kopf's mandatory peering) — and opens or closes :attr:`Reconciler.active` accordingly.

It polls (one GET every ``interval`` seconds): a pre-empted replica may act for at most that long
after a stronger one appears, and whatever it does then is still guarded (status writes are
conditional on ``resourceVersion``; Job names are deterministic, so a second create is adopted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from market_spine.kube import client as kube

log = logging.getLogger(__name__)

PEERING_GROUP_PATH = "/apis/kopf.dev/v1"


def peering_path(namespace: str, name: str) -> str:
    return f"{PEERING_GROUP_PATH}/namespaces/{namespace}/kopfpeerings/{name}"


def _parse(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def stronger_peers(status: Mapping[str, Any], identity: str, priority: int, now: datetime) -> list[str]:
    """The live peers (not us) whose priority is at least ours: while there is one, stand by.

    ``status`` is the KopfPeering's status: ``{identity: {priority, lifetime, lastseen}}``. A peer
    is live until ``lastseen + lifetime``; equal priorities pause every one of them, as in Kopf."""
    found = []
    for peer, info in status.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        seen = _parse(info.get("lastseen"))
        if seen is None or seen + timedelta(seconds=int(info.get("lifetime") or 0)) <= now:
            continue
        if int(info.get("priority") or 0) >= priority:
            found.append(peer)
    return sorted(found)


class PeeringGate:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        priority: int,
        active: asyncio.Event,
        on_resume: Callable[[], object],
        clock: Callable[[], datetime],
        interval: float = 2.0,
    ) -> None:
        self.client = client
        self.path = peering_path(namespace, name)
        self.identity = identity
        self.priority = priority
        self.active = active
        self.on_resume = on_resume
        self.clock = clock
        self.interval = interval

    def check(self) -> list[str] | None:
        """The peers we yield to (``[]``: none, we act), or ``None`` when the peering object does
        not exist (Kopf keeps a mandatory peering paused until it does)."""
        try:
            body = self.client.get(self.path)
        except kube.NotFoundError:
            return None
        return stronger_peers(body.get("status") or {}, self.identity, self.priority, self.clock())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                stronger = await loop.run_in_executor(None, self.check)
            except kube.KubeError as exc:  # keep the last decision until the API answers again
                log.warning("peering check failed: %s", exc)
            else:
                self._apply(stronger)
            await asyncio.sleep(self.interval)

    def _apply(self, stronger: list[str] | None) -> None:
        if stronger == [] and not self.active.is_set():
            log.info("peering: no stronger peer; reconciling")
            self.active.set()
            self.on_resume()
        elif stronger != [] and self.active.is_set():
            why = "the peering object does not exist" if stronger is None else f"stronger peers {stronger}"
            log.info("peering: standing by (%s)", why)
            self.active.clear()
