"""A process "kubelet": plays scheduler and kubelet for one Node of the test control plane.

There is no container runtime on these machines, so pods run as local processes. Everything else
goes through the real API server, as a kubelet's own calls would:

- a ``Node`` object, kept Ready by a heartbeat (its Lease and its Ready condition), so the node
  lifecycle controller never evicts its pods;
- scheduling: the pod is bound to the node through the ``pods/binding`` subresource;
- the container: its command is the image's ENTRYPOINT/CMD (read from the repository's
  Dockerfile, the image's config) or the pod's ``command``/``args``, run with the image's PATH (this
  virtualenv's ``bin`` stands for ``/opt/venv/bin``) and the pod's environment resolved from the
  real objects: ``value``, ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``, ``envFrom``;
- the ServiceAccount token: when the pod mounts the projected volume the ServiceAccount admission
  plugin added (``kube-api-access-*``), the kubelet asks the TokenRequest API for a token bound to
  the pod, writes ``token``, ``ca.crt`` (from the ``kube-root-ca.crt`` ConfigMap) and
  ``namespace``, and bind-mounts them at the mount path in a private mount namespace of the
  process (``unshare``), so the product reads them exactly where it would in a cluster. Where
  ``unshare`` is not allowed, it hands the same token over in a kubeconfig (``KUBECONFIG``);
- status through ``pods/status``: Running (with the Ready condition once a readiness probe
  answers), then Succeeded/Failed with the container's ``terminated`` state: exit code and the
  termination message (``FallbackToLogsOnError``: the tail of the log when the process failed);
- deletion: a pod deleted by a controller (a Job's deadline, the garbage collector, a rollout) has
  its process stopped (SIGTERM, then SIGKILL after the grace period), its final status written,
  and is then removed with grace period 0, as a kubelet confirms a deletion.

How a pod is treated is the test's choice, per namespace (:meth:`ProcessKubelet.serve`): run
every pod (the Helm end-to-end test), or leave pods alone until the test says what happens to
each (``tests/operator/harness.py`` on a real API server: :meth:`start_pod`, :meth:`finish_pod`,
:meth:`execute`). A pod the test never starts is a pod that never gets scheduled.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from market_spine.kube import client as kube
from market_spine.kube.client import KubeClient

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
MAX_MESSAGE = 4096  # a kubelet keeps at most 4096 bytes of a termination message
LOG_LINES = 80  # FallbackToLogsOnError: the last 80 lines of the log


def stamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ImageConfig:
    """What a runtime reads from the image: its ENTRYPOINT, CMD and PATH."""

    entrypoint: list[str]
    cmd: list[str]
    path: str

    @classmethod
    def from_dockerfile(cls, dockerfile: Path = ROOT / "Dockerfile") -> ImageConfig:
        text = dockerfile.read_text()

        def last(instruction: str) -> list[str]:
            found = re.findall(rf"^{instruction}\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
            return list(json.loads(found[-1])) if found else []

        # The image's /opt/venv/bin is this virtualenv's bin folder.
        venv_bin = str(Path(sys.executable).parent)
        return cls(last("ENTRYPOINT"), last("CMD"), f"{venv_bin}:/usr/local/bin:/usr/bin:/bin")


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False, timeout=10
    )
    return probe.returncode == 0


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    folder: Path
    log: Path
    labels: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    stopped_by_kubelet: bool = False
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Exit:
    """A scripted container: it starts and exits at once with ``code`` (and this termination
    message), without running anything."""

    code: int
    message: str = ""


RUN = "run"  # run the container's command as a local process
Action = Exit | str | None  # None: leave the pod alone (never scheduled)
Decision = Callable[[dict[str, Any]], Action]


class ProcessKubelet:
    """One Node whose pods run as local processes. See the module docstring."""

    def __init__(self, client: KubeClient, *, node: str | None = None, folder: Path | None = None) -> None:
        self.api = client
        self.node = node or f"spine-test-node-{secrets.token_hex(3)}"
        self.folder = folder or Path(tempfile.mkdtemp(prefix="spine-kubelet-"))
        self.image = ImageConfig.from_dockerfile()
        self.unshare = _can_unshare()
        self._serve: dict[str, Decision] = {}  # namespace -> run this pod?
        self._pods: dict[tuple[str, str], RunningPod] = {}  # pods on the node now
        self._history: list[RunningPod] = []  # every pod the node ever took, for logs and exit codes
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- node ---------------------------------------------------------------------------------

    def start(self) -> ProcessKubelet:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": self.node},
            },
        }
        with contextlib.suppress(kube.AlreadyExistsError):
            self.api.create("/api/v1/nodes", body)
        self._heartbeat()
        for target, name in ((self._beat_forever, "kubelet-heartbeat"), (self._watch_forever, "kubelet-pods")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            self._kill(pod, grace=2.0)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _heartbeat(self) -> None:
        now = stamp()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "process kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        self.api.merge_patch(
            f"/api/v1/nodes/{self.node}/status",
            {
                "status": {
                    "conditions": [ready],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "capacity": {"cpu": "64", "memory": "256Gi", "pods": "5000"},
                    "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "5000"},
                }
            },
        )
        lease = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            self.api.merge_patch(lease, {"spec": {"renewTime": renew}})
        except kube.NotFoundError:
            with contextlib.suppress(kube.AlreadyExistsError):
                self.api.create(
                    lease.rsplit("/", 1)[0],
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.node},
                        "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": renew},
                    },
                )

    def _beat_forever(self) -> None:
        while not self._stop.wait(10):
            with contextlib.suppress(Exception):
                self._heartbeat()

    # --- policy -----------------------------------------------------------------------------

    def serve(self, namespace: str, decide: Decision | None = None) -> None:
        """Schedule every new pod of ``namespace`` and do what ``decide(pod)`` says: :data:`RUN`
        its command (the default), report a scripted :class:`Exit`, or ``None``: leave it
        Pending, never scheduled."""
        self._serve[namespace] = decide or (lambda _pod: RUN)
        for pod in self.api.list(kube.pods_path(namespace)):
            self._on_pod(pod)

    def leave(self, namespace: str) -> None:
        self._serve.pop(namespace, None)

    # --- the watch ----------------------------------------------------------------------------

    def _watch_forever(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    answer = self.api.request("GET", "/api/v1/pods")
                    version = answer["metadata"]["resourceVersion"]
                    for pod in answer.get("items") or []:
                        self._on_pod(pod)
                for kind, pod in watch(self.api, "/api/v1/pods", version, self._stop):
                    if kind == "BOOKMARK":
                        version = pod["metadata"]["resourceVersion"]
                        continue
                    if kind == "ERROR":
                        version = ""  # 410 Gone: list again
                        break
                    version = pod["metadata"]["resourceVersion"]
                    if kind != "DELETED":
                        self._on_pod(pod)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("process kubelet: pod watch failed; listing again")
                version = ""
                self._stop.wait(0.5)

    def _on_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp"):
            if spec.get("nodeName") == self.node:
                self._spawn(self._finalize_deletion, pod)
            return
        decide = self._serve.get(meta["namespace"])
        if decide is None or spec.get("nodeName") or (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            return
        with self._lock:
            if key in self._pods:
                return
            action = decide(pod)
            if action is None:
                return
            self._pods[key] = self._running_pod(pod)
        self._spawn(lambda p: self._run_scheduled(p, action), pod)

    def _spawn(self, target: Callable[[dict[str, Any]], None], pod: dict[str, Any]) -> None:
        threading.Thread(target=target, args=(pod,), name=f"kubelet {pod['metadata']['name']}", daemon=True).start()

    def _run_scheduled(self, pod: dict[str, Any], action: Action) -> None:
        try:
            if isinstance(action, Exit):
                self.start_pod(pod)
                self.finish_pod(pod, action.code, action.message)
            else:
                self.execute(pod, registered=True)
        except Exception:
            log.exception("process kubelet: pod %s failed to run", pod["metadata"]["name"])

    # --- one pod, step by step (also what the operator tests call) -----------------------------

    def _running_pod(self, pod: dict[str, Any]) -> RunningPod:
        meta = pod["metadata"]
        folder = self.folder / meta["namespace"] / meta["name"]
        folder.mkdir(parents=True, exist_ok=True)
        running = RunningPod(
            meta["namespace"],
            meta["name"],
            meta["uid"],
            folder,
            folder / "container.log",
            dict(meta.get("labels") or {}),
        )
        self._history.append(running)
        return running

    def pods_of_job(self, namespace: str, job: str) -> list[dict[str, Any]]:
        pods = self.api.list(kube.pods_path(namespace), label_selector=f"batch.kubernetes.io/job-name={job}")
        return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])

    def wait_pod(self, namespace: str, job: str, timeout: float = 60.0) -> dict[str, Any]:
        """The (newest, not deleted) pod the Job controller made for ``job``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = [p for p in self.pods_of_job(namespace, job) if not p["metadata"].get("deletionTimestamp")]
            if pods:
                return pods[-1]
            time.sleep(0.05)
        raise AssertionError(f"the Job controller made no pod for Job {namespace}/{job} within {timeout:.0f}s")

    def bind(self, pod: dict[str, Any]) -> None:
        """Schedule the pod on this node (the scheduler's one write); binding twice is harmless."""
        meta, spec = pod["metadata"], pod["spec"]
        if spec.get("nodeName") == self.node:
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        try:
            self.api.create(f"{kube.pods_path(meta['namespace'])}/{meta['name']}/binding", binding, parse=False)
        except kube.AlreadyExistsError:
            current = self.api.get(f"{kube.pods_path(meta['namespace'])}/{meta['name']}")
            if current["spec"].get("nodeName") != self.node:
                raise
        spec["nodeName"] = self.node

    def _status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.api.merge_patch(f"{kube.pods_path(meta['namespace'])}/{meta['name']}/status", {"status": status})

    def _container_status(self, container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": f"process-kubelet://{container['image']}",
            "containerID": f"process://{secrets.token_hex(8)}",
            "ready": ready,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    @staticmethod
    def _conditions(now: str, ready: bool, scheduled: bool = True) -> list[dict[str, Any]]:
        def condition(kind: str, value: bool) -> dict[str, Any]:
            return {"type": kind, "status": "True" if value else "False", "lastTransitionTime": now}

        return [
            condition("PodScheduled", scheduled),
            condition("Initialized", True),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ]

    def start_pod(self, pod: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
        """Schedule the pod and report its container running (the process itself is the caller's)."""
        self.bind(pod)
        now = stamp()
        container = pod["spec"]["containers"][0]
        self._status(
            pod,
            {
                "phase": "Running",
                "startTime": now,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "conditions": self._conditions(now, ready),
                "containerStatuses": [self._container_status(container, {"running": {"startedAt": now}}, ready)],
            },
        )
        return pod

    def finish_pod(self, pod: dict[str, Any], exit_code: int, message: str = "", reason: str | None = None) -> None:
        """Report the container terminated with ``exit_code`` (and the pod Succeeded or Failed)."""
        now = stamp()
        container = pod["spec"]["containers"][0]
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": now,
            "finishedAt": now,
        }
        if message:
            terminated["message"] = message[-MAX_MESSAGE:]
        self._status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": self._conditions(now, False),
                "containerStatuses": [self._container_status(container, {"terminated": terminated}, False)],
            },
        )

    def execute(self, pod: dict[str, Any], *, registered: bool = False) -> int:
        """Schedule the pod, run its container as a local process, report how it ended; returns
        the exit code."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            running = self._pods.get(key) if registered else None
            if running is None:
                running = self._pods[key] = self._running_pod(pod)
        try:
            container = pod["spec"]["containers"][0]
            argv = self.command(container)
            env = self.environment(pod, container, running.folder)
            probe = container.get("readinessProbe")
            self.start_pod(pod, ready=probe is None)
            argv = self._isolate(pod, container, argv, running.folder, env)
            if shutil.which("setpriv"):
                # The container dies with the test run, even one killed outright (as pods die with
                # their node).
                argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
            with running.log.open("wb") as out:
                running.process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=running.folder,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            if probe is not None:
                self._spawn(lambda p: self._probe_readiness(p, running, probe), pod)
            code = running.process.wait()
            running.exit_code = 128 - code if code < 0 else code  # killed by signal N: 128 + N
            if not running.stopped_by_kubelet:
                self.finish_pod(pod, running.exit_code, self.termination_message(container, running))
            return running.exit_code
        except Exception as exc:
            # What a kubelet reports when it cannot start the container (e.g. a missing Secret).
            self.finish_pod(pod, 128, f"process kubelet could not run the container: {exc}", reason="StartError")
            raise
        finally:
            running.done.set()

    def termination_message(self, container: dict[str, Any], running: RunningPod) -> str:
        if running.exit_code == 0 or container.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        lines = running.log.read_bytes().decode(errors="replace").splitlines()[-LOG_LINES:]
        return "\n".join(lines)[-2048:]

    def logs(self, namespace: str, name: str) -> str:
        """The container's log (what ``kubectl logs`` would show; the API server cannot proxy to
        this kubelet), also after the pod is gone."""
        found = [p for p in self.ran(namespace) if p.name == name]
        if not found or not found[-1].log.exists():
            return ""
        return found[-1].log.read_text(errors="replace")

    def running(self, namespace: str) -> list[RunningPod]:
        """The pods of ``namespace`` on the node now."""
        with self._lock:
            return [p for p in self._pods.values() if p.namespace == namespace]

    def ran(self, namespace: str) -> list[RunningPod]:
        """Every pod of ``namespace`` the node took, in order, deleted ones included."""
        with self._lock:
            return [p for p in self._history if p.namespace == namespace]

    # --- the container's command, environment and files ----------------------------------------

    def command(self, container: dict[str, Any]) -> list[str]:
        """Kubernetes' rules: ``command`` replaces ENTRYPOINT (and drops CMD), ``args`` replaces CMD."""
        if container.get("command"):
            argv = list(container["command"]) + list(container.get("args") or [])
        else:
            argv = self.image.entrypoint + list(container.get("args") or self.image.cmd)
        resolved = shutil.which(argv[0], path=self.image.path) if "/" not in argv[0] else argv[0]
        if resolved is None:
            raise FileNotFoundError(f"{argv[0]}: not found on the image's PATH")
        return [resolved, *argv[1:]]

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        data = self.api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}").get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.api.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}").get("data") or {})

    def _field(self, pod: dict[str, Any], path: str) -> str:
        meta, spec = pod["metadata"], pod["spec"]
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": self.node,
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
        }
        if path not in fields:
            raise ValueError(f"fieldRef {path} is not emulated by the process kubelet")
        return fields[path]

    def environment(self, pod: dict[str, Any], container: dict[str, Any], folder: Path) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        port = self.api.server.rsplit(":", 1)[-1]
        env: dict[str, str] = {
            "PATH": self.image.path,
            "HOSTNAME": pod["metadata"]["name"],
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # The kubelet always tells a pod where the API server is.
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                values = self._secret(namespace, source["secretRef"]["name"])
            else:
                values = self._config_map(namespace, source["configMapRef"]["name"])
            env.update({prefix + k: v for k, v in values.items()})
        for var in container.get("env") or []:
            if "value" in var:
                value = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"]
                )
            else:
                ref = var.get("valueFrom") or {}
                if "secretKeyRef" in ref:
                    value = self._secret(namespace, ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
                elif "configMapKeyRef" in ref:
                    value = self._config_map(namespace, ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
                elif "fieldRef" in ref:
                    value = self._field(pod, ref["fieldRef"]["fieldPath"])
                else:
                    raise ValueError(f"env {var['name']}: {sorted(ref)} is not emulated by the process kubelet")
            env[var["name"]] = value
        return env

    def _service_account_files(self, pod: dict[str, Any], volume: dict[str, Any], folder: Path) -> Path:
        """Write what the projected ``kube-api-access-*`` volume holds: a bound token, the CA, the
        namespace."""
        meta = pod["metadata"]
        target = folder / "serviceaccount"
        target.mkdir(exist_ok=True)
        for source in volume["projected"]["sources"]:
            if "serviceAccountToken" in source:
                request = {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {
                        "expirationSeconds": source["serviceAccountToken"].get("expirationSeconds", 3607),
                        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
                    },
                }
                account = pod["spec"].get("serviceAccountName", "default")
                answer = self.api.create(
                    f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", request
                )
                (target / source["serviceAccountToken"]["path"]).write_text(answer["status"]["token"])
            elif "configMap" in source:
                values = self._config_map(meta["namespace"], source["configMap"]["name"])
                for item in source["configMap"].get("items") or [{"key": k, "path": k} for k in values]:
                    (target / item["path"]).write_text(values[item["key"]])
            elif "downwardAPI" in source:
                for item in source["downwardAPI"]["items"]:
                    (target / item["path"]).write_text(self._field(pod, item["fieldRef"]["fieldPath"]))
        return target

    def _isolate(
        self, pod: dict[str, Any], container: dict[str, Any], argv: list[str], folder: Path, env: dict[str, str]
    ) -> list[str]:
        """Mount the ServiceAccount volume where the container expects it (see the module docstring)."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mount = next(
            (
                m
                for m in container.get("volumeMounts") or []
                if m.get("mountPath") == SA_MOUNT and "projected" in volumes.get(m["name"], {})
            ),
            None,
        )
        if mount is None:
            return argv
        files = self._service_account_files(pod, volumes[mount["name"]], folder)
        if not self.unshare:
            # Same token, handed over as a kubeconfig: the product falls back to it when the
            # in-cluster files are missing.
            server = self.api.server
            ca = files / "ca.crt"
            token = (files / "token").read_text()
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "in-cluster", "cluster": {"server": server, "certificate-authority": str(ca)}}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "sa"}}],
                "current-context": "in-cluster",
            }
            (folder / "kubeconfig").write_text(json.dumps(config))
            env["KUBECONFIG"] = str(folder / "kubeconfig")
            return argv
        Path(SA_MOUNT).mkdir(parents=True, exist_ok=True)  # the mount point (empty on the host)
        script = 'mount --bind -o ro "$1" "$2" && shift 2 && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(files), SA_MOUNT, *argv]

    def _probe_readiness(self, pod: dict[str, Any], running: RunningPod, probe: dict[str, Any]) -> None:
        """An httpGet readiness probe: the pod turns Ready once the endpoint answers 2xx/3xx."""
        http = probe.get("httpGet")
        if not http:
            return
        container = pod["spec"]["containers"][0]
        port = http["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)
        url = f"http://127.0.0.1:{port}{http.get('path', '/')}"
        period = float(probe.get("periodSeconds", 10))
        while not running.done.is_set() and not self._stop.is_set():
            timeout = float(probe.get("timeoutSeconds", 1))
            with contextlib.suppress(Exception), urllib.request.urlopen(url, timeout=timeout) as answer:
                if answer.status < 400:
                    now = stamp()
                    started = self._container_status(container, {"running": {"startedAt": now}}, True)
                    self._status(pod, {"conditions": self._conditions(now, True), "containerStatuses": [started]})
                    return
            running.done.wait(min(period, 1.0))

    # --- deletion -----------------------------------------------------------------------------

    def _kill(self, running: RunningPod, grace: float) -> None:
        process = running.process
        if process is None or process.poll() is not None:
            return
        running.stopped_by_kubelet = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _finalize_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            running = self._pods.get(key)
        grace = float(meta.get("deletionGracePeriodSeconds") or 30)
        phase = (pod.get("status") or {}).get("phase")
        if running is not None and running.process is not None and running.process.poll() is None:
            self._kill(running, grace)
            running.done.wait(10)
            code = running.exit_code if running.exit_code is not None else 137
            with contextlib.suppress(kube.KubeError):
                self.finish_pod(pod, code, "", reason="Error")
        elif phase not in ("Succeeded", "Failed"):
            with contextlib.suppress(kube.KubeError):  # never started: report it ended all the same
                self.finish_pod(pod, 137, "", reason="ContainerStatusUnknown")
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        with contextlib.suppress(kube.NotFoundError, kube.ConflictError):
            self.api.request("DELETE", f"{kube.pods_path(meta['namespace'])}/{meta['name']}", body=options)
        with self._lock:
            self._pods.pop(key, None)


def watch(
    client: KubeClient, path: str, resource_version: str, stop: threading.Event, timeout: int = 60
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(type, object)`` of a watch stream (bookmarks included) until the server ends it."""
    query = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
             "timeoutSeconds": str(timeout)}  # fmt: skip
    _, url, headers, _, _ = client.api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list(query.items()),
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = client.api.rest_client.pool_manager.request(
        "GET", url, headers=headers, preload_content=False, timeout=timeout + 10
    )
    try:
        if response.status != 200:
            raise kube.KubeError(f"watch {path}: HTTP {response.status}")
        buffer = b""
        for chunk in response.stream(65536):
            if stop.is_set():
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    event = json.loads(line)
                    yield event["type"], event["object"]
    finally:
        response.release_conn()
