"""Kubernetes Events about SpineWorkItems (what ``kubectl describe swi`` lists under Events).

Called by the operator's event poster after each status write. Events are core/v1 Events with the
work item as ``involvedObject``: every state transition posts one (``Warning`` for failures), so a
work item's history reads top to bottom in ``kubectl describe``.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import datetime
from typing import Any

from market_spine.core.resource import API_VERSION, KIND

COMPONENT = "market-spine-operator"
MAX_MESSAGE = 1024  # the API server truncates longer messages; do it ourselves, keeping the end
# Event names: the item's name, this process's random prefix and a counter (unique without asking
# the system for randomness per Event).
_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count()


def event_manifest(
    *,
    namespace: str,
    name: str,
    uid: str,
    kind: str,
    reason: str,
    message: str,
    now: datetime,
    instance: str,
) -> dict[str, Any]:
    stamp = now.isoformat().replace("+00:00", "Z")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{_PREFIX}{next(_COUNTER):08x}", "namespace": namespace},
        "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": name, "namespace": namespace, "uid": uid},
        "type": kind,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
