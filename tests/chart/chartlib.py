"""Helpers shared by the chart tests: paths, rendered-manifest access, pod-spec walkers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "market-spine"
HERE = Path(__file__).resolve().parent
ALL_FEATURES = HERE / "values-all-features.yaml"
RELEASE = "ms"
NAMESPACE = "market-data"

# Values sets every policy test runs against: the chart's defaults and everything switched on.
VALUE_SETS: dict[str, tuple[Path, ...]] = {"default": (), "all-features": (ALL_FEATURES,)}


@dataclass
class Rendered:
    """The output of one ``helm template``: the raw text and its documents."""

    text: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        return found[0]


@dataclass
class HelmResult:
    returncode: int
    stdout: str
    stderr: str


def parse_docs(text: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        assert isinstance(d, dict) and "kind" in d and "apiVersion" in d, f"not a Kubernetes object: {d!r}"
    return docs


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) inside a workload object (Deployment, Job, CronJob, ...)."""
    kind = doc["kind"]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        return [doc["spec"]["template"]["spec"]]
    if kind == "Pod":
        return [doc["spec"]]
    return []


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
