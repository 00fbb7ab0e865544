"""A Kubernetes API emulator for the operator tests and benchmarks: KMock, made to answer like a
real API server where the operator's correctness depends on it.

KMock's ``KubernetesEmulator`` stores objects and serves list/watch/create/patch/delete. A real API
server also does the following, and the operator relies on each (so the tests must not pass on
behaviour a cluster would not have):

* assigns ``metadata.uid``, ``resourceVersion``, ``generation`` and ``creationTimestamp``;
* answers ``409 AlreadyExists`` to a create of an existing name, and ``409 Conflict`` to a patch
  carrying a stale ``metadata.resourceVersion`` (optimistic concurrency);
* applies the status subresource: ``PATCH …/status`` changes only ``status``, a patch of the main
  resource ignores ``status``, and a create drops it;
* bumps ``generation`` only when ``spec`` changes, and makes a no-op patch a no-op (no new version,
  no watch event);
* filters lists by equality label selectors;
* answers with proper ``Status`` objects (reason ``NotFound``, ``AlreadyExists``, ``Conflict``).

The emulator runs in its own thread and event loop (:class:`EmulatorThread`), like an API server
in another process; ``emulator_process`` runs it in a separate process for benchmarks.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import yaml
from kmock._internal import enums, parsing, rendering

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "spine.marketspine.io_spineworkitems.yaml"

RESOURCES: dict[str, kmock.ResourceInfo] = {
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "watch", "create", "delete"}
    ),
    "v1/namespaces": kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"get", "list", "watch", "create", "delete"}
    ),
    "spine.marketspine.io/v1/spineworkitems": kmock.ResourceInfo(
        kind="SpineWorkItem",
        singular="spineworkitem",
        namespaced=True,
        shortnames={"swi"},
        categories={"spine"},
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    ),
    "batch/v1/jobs": kmock.ResourceInfo(
        kind="Job",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"get", "list", "watch", "create", "patch"}),
}

_MUTATIONS = (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE)
_parse_path = parsing.parse_path


def _parse_namespaces(path: str) -> parsing.ParsedPath:
    """KMock reads ``/api/v1/namespaces[/name]`` as a namespaced path with no namespace (and fails);
    it is the cluster-scoped ``namespaces`` resource."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse_path(path)


parsing.parse_path = _parse_namespaces


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector_matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class ApiServerEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """KMock with the API-server behaviours listed in the module docstring."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._rv = itertools.count(1)
        self._mutex: asyncio.Lock | None = None
        for name, info in RESOURCES.items():
            self.resources[name] = info

    # --- helpers ----------------------------------------------------------------------------

    def _status_error(self, status: int, reason: str, message: str, request: rendering.Request) -> aiohttp.web.Response:
        details: dict[str, Any] = {"name": request.name}
        if request.resource is not None:
            details["group"] = request.resource.group
            details["kind"] = request.resource.plural
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": status,
        }
        return aiohttp.web.json_response(body, status=status)

    def _has_status(self, resource: Any) -> bool:
        for name, info in RESOURCES.items():
            if resource == name:
                return "status" in info.subresources
        return False

    def _stored(self, key: tuple[Any, str | None, str | None]) -> Any:
        obj = self._objects._objects.get(key)
        return None if obj is None or obj.deleted else obj

    # --- request handling -------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # KMock keeps every request for assertions, and matches each new request against all of
        # them (O(requests) per request); the emulator needs none of that history.
        del self._requests[:-1]
        for payload in self._payloads:
            del payload._requests[:]
        if request.resource is None or not request.resource.plural:
            return await self._safe(request)  # discovery
        if request.action in (enums.action.FETCH, enums.action.LIST):
            try:
                reader = self._serve_fetch if request.action == enums.action.FETCH else self._serve_list
                return aiohttp.web.json_response(await reader(request))
            except kmock.KubernetesError as exc:
                return self._status_error(exc.status, exc.reason or "Unknown", exc.message or "", request)
        if request.action not in _MUTATIONS:
            return await self._safe(request)  # watch
        if self._mutex is None:
            self._mutex = asyncio.Lock()
        async with self._mutex:
            early = self._prepare(request)
            if early is not None:
                return early
            response = await self._mutate(request)
            self._trim(request)
            return response

    async def _mutate(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """Store the change and tell the watchers (what KMock does, without its reaction matching,
        which costs more than the rest of a request)."""
        bus = self._buses[request.resource]
        if request.action == enums.action.CREATE:
            key = self._key(request)
            if key in self._objects._objects:
                self._objects._objects[key].create(request.data)
            else:
                self._objects[key] = request.data
            raw = self._objects._objects[key].last.raw
            await bus.put({"type": "ADDED", "object": raw})
            return aiohttp.web.json_response(raw, status=201)
        obj = self._objects._objects[(request.resource, request.namespace, request.name)]
        if request.action == enums.action.UPDATE:
            obj.patch(request.data)
            raw = obj.raw
            event = "MODIFIED"
        elif obj.get("metadata", {}).get("finalizers"):
            stamp = {"metadata": {"deletionTimestamp": _now(), "resourceVersion": str(next(self._rv))}}
            if not obj.get("metadata", {}).get("deletionTimestamp"):
                obj.patch(stamp)
            raw = obj.raw
            event = "MODIFIED"
        else:
            obj.patch({"metadata": {"resourceVersion": str(next(self._rv))}})
            raw = obj.raw
            obj.delete()
            event = "DELETED"
        await bus.put({"type": event, "object": raw})
        if (
            event == "MODIFIED"
            and raw.get("metadata", {}).get("deletionTimestamp")
            and not raw["metadata"].get("finalizers")
        ):
            obj.delete()  # the last finalizer was removed: the object goes away
            await bus.put({"type": "DELETED", "object": raw})
        return aiohttp.web.json_response(raw)

    async def _safe(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        try:
            return await super()._handle(request)
        except kmock.KubernetesError as exc:  # expected answers, not server errors worth keeping
            return self._status_error(exc.status, exc.reason or "Unknown", exc.message or "", request)

    def _prepare(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        """Check preconditions and complete the request body as a real API server would."""
        plural = request.resource.plural if request.resource is not None else "objects"
        if request.action == enums.action.CREATE:
            data = request.data
            if not isinstance(data, dict):
                return self._status_error(400, "BadRequest", "the body must be an object", request)
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            if request.namespace:
                meta["namespace"] = request.namespace
            key = (request.resource, request.namespace or meta.get("namespace"), meta.get("name"))
            if self._stored(key) is not None:
                message = f'{plural} "{meta.get("name")}" already exists'
                return self._status_error(409, "AlreadyExists", message, request)
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(next(self._rv))
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            if self._has_status(request.resource):
                data.pop("status", None)
            return None
        key = (request.resource, request.namespace, request.name)
        current = self._stored(key)
        if current is None:
            return self._status_error(404, "NotFound", f'{plural} "{request.name}" not found', request)
        if request.action == enums.action.DELETE:
            return None
        data = request.data
        if not isinstance(data, dict):
            return self._status_error(415, "UnsupportedMediaType", "the emulator takes merge patches only", request)
        raw = current.raw
        old_meta = raw.get("metadata") or {}
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and str(wanted) != str(old_meta.get("resourceVersion")):
            message = (
                f'Operation cannot be fulfilled on {plural} "{request.name}": the object has been modified;'
                " please apply your changes to the latest version and try again"
            )
            return self._status_error(409, "Conflict", message, request)
        if request.subresource == "status":
            data = {"status": data.get("status"), "metadata": data.get("metadata") or {}}
        elif self._has_status(request.resource):
            data = {k: v for k, v in data.items() if k != "status"}
        data.setdefault("metadata", {}).pop("resourceVersion", None)
        result = kmock_merge(raw, data)
        if _without_rv(result) == _without_rv(raw):
            return self._no_op(raw)  # a no-op patch: nothing changes, no new version, no watch event
        meta = data["metadata"]
        meta["resourceVersion"] = str(next(self._rv))
        if request.subresource is None and result.get("spec") != raw.get("spec"):
            meta["generation"] = int(old_meta.get("generation") or 1) + 1
        _replace(request.data, data)
        return None

    def _no_op(self, raw: dict[str, Any]) -> aiohttp.web.StreamResponse:
        return aiohttp.web.json_response(raw)

    def _trim(self, request: rendering.Request) -> None:
        obj = self._objects._objects.get((request.resource, request.namespace, request.name))
        if obj is not None and len(obj.history) > 2:
            del obj.history[:-2]

    # --- faster and more faithful reads -----------------------------------------------------
    # KMock finds objects by scanning all of them (O(n) per request); these look them up by key.

    def _get_resources(self) -> list[Any]:
        return list(kmock.KubernetesScaffold._get_resources(self))

    def _key(self, request: rendering.Request) -> tuple[Any, str | None, str | None]:
        data = request.data if isinstance(request.data, dict) else {}
        meta = data.get("metadata") or {}
        return (request.resource, request.namespace or meta.get("namespace"), request.name or meta.get("name"))

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        obj = self._objects._objects.get(self._key(request))
        assert obj is not None
        return obj.last.raw

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        obj = self._objects._objects.get((request.resource, request.namespace, request.name))
        assert obj is not None
        return obj.last.raw

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        obj = self._objects._objects.get((request.resource, request.namespace, request.name))
        assert obj is not None
        return obj.last.raw

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        obj = self._stored((request.resource, request.namespace, request.name))
        if obj is None:
            raise kmock.KubernetesError(status=404, reason="NotFound", message=f'"{request.name}" not found')
        return obj.raw

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if not any(request.resource == r for r in self._get_resources()):
            raise kmock.KubernetesResourceNotFoundError()
        selector = (request.params or {}).get("labelSelector") or ""
        items = []
        for (resource, namespace, _), obj in list(self._objects._objects.items()):
            if resource != request.resource or obj.deleted:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            raw = obj.raw
            if selector and not _selector_matches((raw.get("metadata") or {}).get("labels") or {}, selector):
                continue
            items.append(raw)
        return {"metadata": {"resourceVersion": str(next(self._rv))}, "items": items}

    # --- test helpers -----------------------------------------------------------------------

    async def redeliver(self, resource: str, namespace: str, name: str) -> None:
        """Send the object's current state down every watch stream again (a duplicate event)."""
        res = kmock.resource(resource)
        obj = self._stored((res, namespace, name))
        assert obj is not None, (resource, namespace, name)
        await self._buses[res].put({"type": "MODIFIED", "object": copy.deepcopy(obj.raw)})


def _replace(target: dict[str, Any], data: dict[str, Any]) -> None:
    # KMock's requests are frozen; their parsed body is a plain dict we can rewrite in place.
    replacement = dict(data)
    target.clear()
    target.update(replacement)


def kmock_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    from kmock._internal import dicts

    return dict(dicts.patch_dict(copy.deepcopy(base), patch))


def _without_rv(obj: dict[str, Any]) -> str:
    clean = dict(obj)
    clean["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return json.dumps(clean, sort_keys=True, default=str)


class EmulatorThread:
    """The emulator served on 127.0.0.1 from its own thread and event loop."""

    def __init__(self) -> None:
        self.emulator: ApiServerEmulator | None = None
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kube-api-emulator", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the API emulator did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the emulator's loop (e.g. ``redeliver``) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing at ``server`` (the emulator: plain HTTP, a dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def crd_manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return data


def resources() -> Iterable[str]:
    return RESOURCES


def main() -> None:
    """``python -m tests.operator.emulator``: serve the emulator on loopback in this process (as a
    separate API server for benchmarks). Prints its URL on the first line; stops on SIGTERM."""
    import signal

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
            print(str(server.url).rstrip("/"), flush=True)
            await stop.wait()
            os._exit(0)  # nothing to clean up; open watch streams would delay a graceful exit

    asyncio.run(serve())


if __name__ == "__main__":
    main()
