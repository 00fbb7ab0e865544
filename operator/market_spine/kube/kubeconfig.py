"""Which cluster, context and namespace a kubectl user means, read as kubectl reads them.

Called by the kubectl plugin (``kubectl spine …``). The kubeconfig is ``--kubeconfig``, else
``$KUBECONFIG`` (one file or a ``:``-separated list, merged), else ``~/.kube/config``; the context
is ``--context``, else the kubeconfig's ``current-context``; the namespace is ``--namespace``/``-n``,
else the context's ``namespace``, else ``default``. With no kubeconfig at all, in-cluster
credentials are used (the pod's ServiceAccount and namespace), as kubectl does in a pod.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import config as kube_config

from market_spine.errors import UsageError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Target:
    kubeconfig: Path | None  # None: $KUBECONFIG's list, or in-cluster
    context: str | None  # None: the current context (or in-cluster)
    namespace: str


def _kubeconfig(explicit: str | None) -> tuple[str | None, Path | None]:
    """(what the kubernetes package should load, the single file if there is one)."""
    if explicit:
        return explicit, Path(explicit)
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if len(listed) == 1:
        return listed[0], Path(listed[0])
    if listed:
        return os.environ["KUBECONFIG"], None  # a list: the kubernetes package merges the files
    default = Path("~/.kube/config").expanduser()
    return (str(default), default) if default.is_file() else (None, None)


def resolve(kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    """The target of a ``kubectl spine`` command (see the module docstring)."""
    load, single = _kubeconfig(kubeconfig)
    if load is None:  # no kubeconfig: in a pod, or nowhere
        if namespace is None and IN_CLUSTER_NAMESPACE.is_file():
            namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
        return Target(None, context, namespace or "default")
    try:
        contexts, current = kube_config.list_kube_config_contexts(config_file=load)  # type: ignore[no-untyped-call]
    except (kube_config.ConfigException, OSError) as exc:
        raise UsageError(f"cannot read the kubeconfig ({load}): {exc}") from None
    chosen = current if context is None else next((c for c in contexts if c.get("name") == context), None)
    if chosen is None:
        names = ", ".join(str(c.get("name")) for c in contexts) or "none"
        raise UsageError(f"no context {context!r} in the kubeconfig; contexts: {names}")
    if namespace is None:
        namespace = (chosen.get("context") or {}).get("namespace") or "default"
    return Target(single, context or chosen.get("name"), namespace)
