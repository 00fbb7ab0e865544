"""Deterministic Kubernetes names for work items and their Jobs (SPEC §3.4).

A CronJob that runs twice must produce the same work-item name, and an operator that restarts
mid-attempt must compute the same Job name, so names derive only from identity fields. Names are
DNS-1123 labels (at most 63 characters) with a short hash that keeps them unique after truncation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from market_spine.core.partitions import canonical_key

_MAX = 63
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", text.lower()).strip("-")


def work_item_name(domain: str, pipeline: str, partition: Mapping[str, object]) -> str:
    """E.g. ``ingest-week-2025-12-15-otc-231acfd0`` for the FINRA ingest of OTC, week 2025-12-15."""
    digest = hashlib.sha256(f"{domain}\n{pipeline}\n{canonical_key(partition)}".encode()).hexdigest()[:8]
    stage = _slug(pipeline.rsplit(".", 1)[-1])
    values = "-".join(_slug(str(partition[k])) for k in sorted(partition, reverse=True))
    head = f"{stage}-{values}"[: _MAX - 9].strip("-") or "item"  # a label must start alphanumeric
    return f"{head}-{digest}"


def job_name(work_item: str, attempt: int) -> str:
    """The Job of ``attempt`` (1-based) of ``work_item``: ``<item>-a<attempt>``, hashed if too long."""
    suffix = f"-a{attempt}"
    if len(work_item) + len(suffix) <= _MAX:
        return work_item + suffix
    digest = hashlib.sha256(work_item.encode()).hexdigest()[:6]
    return f"{work_item[: _MAX - len(suffix) - 7].rstrip('-')}-{digest}{suffix}"
