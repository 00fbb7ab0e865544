"""A real Kubernetes control plane for the tests, the way controller-runtime's *envtest* does it.

``KUBEBUILDER_ASSETS`` names a folder holding ``etcd``, ``kube-apiserver`` and (optionally)
``kube-controller-manager`` binaries; the Makefile points it at ``../shared/k8s/`` unpacked into
``.cache/k8s`` (``setup-envtest use 1.33 -p path`` prints such a folder on a machine with
internet). :class:`ControlPlane` starts etcd and kube-apiserver on free loopback ports in a
temporary folder, with:

- its own certificate authority and serving certificate (made here with ``cryptography``);
- static bearer tokens for an admin (``system:masters``) and for the controller manager;
- RBAC authorization, ServiceAccount token signing (the TokenRequest API works: the process
  kubelet of ``tests/support/kubelet.py`` gives pods real ServiceAccount tokens);
- an audit log of every request made with a ServiceAccount token outside ``kube-system``, so a
  test can prove which permissions the chart's ServiceAccounts actually use (and that none was
  refused);
- optionally kube-controller-manager: the real Job, CronJob, garbage-collector, namespace,
  Deployment/ReplicaSet and ServiceAccount controllers.

Every process is started with a parent-death signal, so an interrupted pytest never leaves a
control plane behind; :meth:`ControlPlane.stop` stops them in order (controllers, API server,
etcd) and removes the folder. Used by ``tests/operator/conftest.py`` (one control plane per test
session), the Helm end-to-end test and ``bench/bench_operator.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ASSETS_ENV = "KUBEBUILDER_ASSETS"
KUBECONFIG_ENV = "SPINE_TEST_KUBECONFIG"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
BINARIES = ("etcd", "kube-apiserver")

# Requests made with ServiceAccount tokens of the test namespaces (the chart's operator and
# CronJobs), at Metadata level: who, which verb on which resource, and the answer's code. The
# controller manager's own accounts (kube-system) are left out: they make most of the requests.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


def assets() -> Path | None:
    """The folder ``KUBEBUILDER_ASSETS`` names, if it holds etcd and kube-apiserver."""
    value = os.environ.get(ASSETS_ENV)
    if not value:
        return None
    folder = Path(value)
    return folder if all((folder / name).is_file() for name in BINARIES) else None


def skip_reason() -> str:
    if os.environ.get("SPINE_TEST_KUBE") == "emulator":
        return "SPINE_TEST_KUBE=emulator: this run uses the in-memory emulator instead of a real API server"
    value = os.environ.get(ASSETS_ENV)
    if value:
        return f"{ASSETS_ENV}={value} does not hold {' and '.join(BINARIES)}"
    return (
        f"needs a real kube-apiserver: set {ASSETS_ENV} to a folder with etcd, kube-apiserver and"
        f" kube-controller-manager (`make test` unpacks ../shared/k8s/ into .cache/k8s), or"
        f" {KUBECONFIG_ENV} to a cluster's kubeconfig"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the child gets SIGTERM when the process that started it dies, so even a
    # test run killed with SIGKILL leaves no API server or etcd running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


# --- certificates ---------------------------------------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Pki:
    """The control plane's certificate authority, serving certificate and ServiceAccount key."""

    folder: Path
    ca_cert: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)
    sa_key: Path = field(init=False)
    sa_pub: Path = field(init=False)

    def __post_init__(self) -> None:
        f = self.folder
        self.ca_cert, self.server_cert, self.server_key = f / "ca.crt", f / "apiserver.crt", f / "apiserver.key"
        self.sa_key, self.sa_pub = f / "sa.key", f / "sa.pub"

    def create(self) -> Pki:
        self.folder.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        later = now + dt.timedelta(days=30)
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spine-test-kubernetes-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        server_key = _key()
        names: list[x509.GeneralName] = [
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", SERVICE_IP)]
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write_cert(self.ca_cert, ca)
        _write_cert(self.server_cert, server)
        _write_key(self.server_key, server_key)
        sa = _key()
        _write_key(self.sa_key, sa)
        self.sa_pub.write_bytes(
            sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return self


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, namespace: str = "default") -> Path:
    """A kubeconfig for ``server`` with a bearer token (the form ``kubectl`` and both clients read)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "envtest-user", "user": {"token": token}}],
        "contexts": [
            {"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-user", "namespace": namespace}}
        ],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# --- the control plane ----------------------------------------------------------------------


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, in a folder of their own."""

    def __init__(self, binaries: Path, folder: Path | None = None) -> None:
        self.binaries = binaries
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="spine-envtest-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(self.folder / "pki")
        self.port = 0
        self.admin_token = secrets.token_hex(24)
        self.controller_token = secrets.token_hex(24)
        self.audit_log = self.folder / "audit.log"
        self._processes: list[_Process] = []

    # --- addresses and credentials ---

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (``system:masters``)."""
        return self.folder / "admin.kubeconfig"

    @property
    def has_controller_manager(self) -> bool:
        return any(p.name == "kube-controller-manager" for p in self._processes)

    def version(self) -> str:
        return str(self.request("GET", "/version").get("gitVersion", "?"))

    def pids(self) -> dict[str, int]:
        """The pid of each process of the control plane, by binary name (for CPU accounting)."""
        return {p.name: p.popen.pid for p in self._processes}

    # --- lifecycle ---

    def start(self, *, controllers: bool = True) -> ControlPlane:
        try:
            self._start_etcd()
            self._start_apiserver()
            if controllers and (self.binaries / "kube-controller-manager").is_file():
                self.start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log = self.folder / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(self.binaries / name), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches pytest, which stops us in order
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (started from the main thread)
            )
        process = _Process(name, popen, log)
        self._processes.append(process)
        return process

    def _wait(self, process: _Process, ready: Any, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                tail = process.log.read_text(errors="replace").splitlines()[-25:]
                raise ControlPlaneError(f"{process.name} exited with {process.popen.returncode}:\n" + "\n".join(tail))
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s; see {process.log}")

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        config = {
            "name": "envtest",
            "data-dir": str(self.folder / "etcd"),
            "listen-client-urls": f"http://127.0.0.1:{client}",
            "advertise-client-urls": f"http://127.0.0.1:{client}",
            "listen-peer-urls": f"http://127.0.0.1:{peer}",
            "initial-advertise-peer-urls": f"http://127.0.0.1:{peer}",
            "initial-cluster": f"envtest=http://127.0.0.1:{peer}",
            "initial-cluster-state": "new",
            "unsafe-no-fsync": True,  # a throw-away store: durability buys nothing and costs seconds
            "quota-backend-bytes": 2 * 1024**3,
            "auto-compaction-mode": "periodic",
            "auto-compaction-retention": "5m",
            "log-level": "warn",
            "logger": "zap",
            "warning-unary-request-duration": 300_000_000,
        }
        path = self.folder / "etcd.yaml"
        path.write_text(yaml.safe_dump(config))
        self.etcd_url = f"http://127.0.0.1:{client}"
        process = self._spawn("etcd", ["--config-file", str(path)])

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as answer:
                return bool(json.load(answer).get("health") == "true")

        self._wait(process, healthy, "etcd")

    def _start_apiserver(self) -> None:
        self.pki.create()
        tokens = self.folder / "tokens.csv"
        tokens.write_text(
            f'{self.admin_token},envtest-admin,envtest-admin,"system:masters"\n'
            f"{self.controller_token},system:kube-controller-manager,kube-controller-manager\n"
        )
        tokens.chmod(0o600)
        policy = self.folder / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.port = free_port()
        args = [
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--etcd-servers={self.etcd_url}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            f"--token-auth-file={tokens}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--tls-cert-file={self.pki.server_cert}",
            f"--tls-private-key-file={self.pki.server_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki.sa_pub}",
            f"--service-account-signing-key-file={self.pki.sa_key}",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",
            "--v=1",
        ]
        process = self._spawn("kube-apiserver", args)
        write_kubeconfig(self.kubeconfig, self.server, self.pki.ca_cert, self.admin_token)
        self._wait(process, lambda: self._get_text("/readyz") == "ok", "kube-apiserver")

    def start_controller_manager(self) -> None:
        """The real controllers, authenticated as ``system:kube-controller-manager`` and each
        controller under its own ServiceAccount (as kubeadm runs it)."""
        if self.has_controller_manager:
            return
        config = write_kubeconfig(
            self.folder / "controller-manager.kubeconfig", self.server, self.pki.ca_cert, self.controller_token
        )
        args = [
            f"--kubeconfig={config}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",  # no health endpoint: readiness is checked through the API below
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            "--controllers=*",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The client's default 20 requests/s would make the controllers, not the code under
            # test, the bottleneck of the burst tests.
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--concurrent-job-syncs=20",
            "--v=1",
        ]
        process = self._spawn("kube-controller-manager", args)
        # The ServiceAccount controller makes every namespace's `default` account: the sign that
        # the controllers are up (and what pods need before they can be created).
        self._wait(
            process,
            lambda: self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default"),
            "kube-controller-manager",
        )

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
                try:
                    process.popen.wait(timeout=3)  # throw-away state: no need to wait for a graceful end
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait(timeout=5)
        self._processes.clear()
        if self._own_folder and not os.environ.get("SPINE_TEST_KEEP_ENVTEST"):
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self if self._processes else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- direct calls (stdlib only: the fixture must not depend on the code under test) ---

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def _get_text(self, path: str) -> str:
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=5, context=self._context()) as answer:
            return str(answer.read().decode())

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=self._context()) as answer:
                result: dict[str, Any] = json.loads(answer.read() or b"{}")
                return result
        except urllib.error.HTTPError as exc:
            raise ControlPlaneError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def service_account_token(self, namespace: str, name: str, *, pod: dict[str, Any] | None = None) -> str:
        """A token from the TokenRequest API, as the kubelet projects it into a pod (bound to the
        pod when given, valid for an hour)."""
        spec: dict[str, Any] = {"expirationSeconds": 3607}
        if pod is not None:
            meta = pod["metadata"]
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])

    def service_account_kubeconfig(self, path: Path, namespace: str, name: str) -> Path:
        """A kubeconfig that acts as ServiceAccount ``namespace/name`` (with its RBAC, nothing more)."""
        return write_kubeconfig(
            path, self.server, self.pki.ca_cert, self.service_account_token(namespace, name), namespace
        )

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """Audit events so far (ServiceAccounts of the test namespaces only; see AUDIT_POLICY)."""
        if not self.audit_log.exists():
            return
        with self.audit_log.open() as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    yield json.loads(line)
