"""A small JSON client for the Kubernetes API, on top of the official ``kubernetes`` package.

Called by ``kube.workitems`` (``spine work …`` with ``SPINE_BACKEND=kubernetes``) and by the
operator, which runs these blocking calls in a thread pool. The official package does the hard
parts (kubeconfig and in-cluster credentials, TLS, token refresh); this module keeps requests and
answers as plain dicts (no model classes, which cost a millisecond per object to build) and turns
API failures into the few errors callers act on: not found, already exists, conflict, refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from urllib3 import Timeout
from urllib3.exceptions import HTTPError

from market_spine.core.resource import GROUP, PLURAL, VERSION
from market_spine.errors import SpineError, UsageError

MERGE_PATCH = "application/merge-patch+json"


class KubeError(SpineError):
    """The Kubernetes API refused a request or could not be reached."""

    exit_code = 8

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(KubeError):
    """404: the object (or the resource type) does not exist."""


class AlreadyExistsError(KubeError):
    """409 on create: an object with this name exists."""


class ConflictError(KubeError):
    """409 on update: the object changed since it was read (resourceVersion precondition)."""


class InvalidError(KubeError):
    """400/422: the API server refused the object (schema, CEL rule, immutable field)."""


class UnavailableError(KubeError):
    """The API server could not be reached, timed out, or answered 429/5xx: retry later."""


def load_configuration(kubeconfig: Path | None = None, context: str | None = None) -> Configuration:
    """Credentials for the API: ``kubeconfig`` (its ``context``, else its current one) if given,
    else in-cluster, else the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``)."""
    configuration = Configuration()
    try:
        if kubeconfig is not None or context is not None:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, context=context, client_configuration=configuration
            )
        else:
            try:
                kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except kube_config.ConfigException:
                kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (kube_config.ConfigException, OSError) as exc:
        where = str(kubeconfig) if kubeconfig else "in-cluster or ~/.kube/config"
        raise UsageError(f"no Kubernetes credentials ({where}): {exc}; set SPINE_KUBECONFIG") from exc
    return configuration


def swi_path(namespace: str, name: str | None = None, *, status: bool = False) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    if name is not None:
        path += f"/{name}"
        if status:
            path += "/status"
    return path


def job_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{path}/{name}" if name is not None else path


def pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


def events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/events"


def _message(exc: ApiException) -> tuple[str, str | None]:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"]), body.get("reason")
    return (exc.reason or f"HTTP {exc.status}"), None


class KubeClient:
    """Blocking, thread-safe calls returning parsed JSON. One per process is enough."""

    def __init__(self, configuration: Configuration, *, timeout: float = 30.0, pool_size: int = 16) -> None:
        configuration.connection_pool_maxsize = max(pool_size, configuration.connection_pool_maxsize or 0)
        self.api = ApiClient(configuration)
        self.timeout = timeout
        self._timeout = Timeout(connect=min(timeout, 10.0), read=timeout)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        content_type: str = "application/json",
        parse: bool = True,
    ) -> dict[str, Any]:
        """``parse=False``: the caller does not need the answer (it is not decoded)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        # The client builds the URL and the credentials (refreshing tokens as needed); the body is
        # sent as JSON as is: its generic model serialization costs more than the request itself.
        _, url, header_params, _, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        try:
            response = self.api.rest_client.pool_manager.request(
                method, url, body=payload, headers=header_params, timeout=self._timeout, preload_content=True
            )
        except (HTTPError, OSError) as exc:
            raise UnavailableError(f"cannot reach the Kubernetes API at {self.server}: {exc}") from exc
        data: bytes = response.data
        if not 200 <= response.status <= 299:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = data.decode("utf-8", "replace") if data else ""
            raise self._error(method, path, error)
        result: dict[str, Any] = json.loads(data) if data and parse else {}
        return result

    @staticmethod
    def _error(method: str, path: str, exc: ApiException) -> KubeError:
        message, reason = _message(exc)
        where = f"{method} {path}: {message}"
        status = exc.status
        if status == 404:
            return NotFoundError(where, status, reason)
        if status == 409:
            if reason == "AlreadyExists" or method == "POST":
                return AlreadyExistsError(where, status, reason)
            return ConflictError(where, status, reason)
        if status in (400, 422):
            return InvalidError(where, status, reason)
        if status == 429 or (status is not None and status >= 500):
            return UnavailableError(where, status, reason)
        return KubeError(where, status, reason)

    # --- verbs ------------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        items = self.request("GET", path, query=query).get("items") or []
        return list(items)

    def create(self, path: str, body: Mapping[str, Any], *, parse: bool = True) -> dict[str, Any]:
        return self.request("POST", path, body=dict(body), parse=parse)

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch. With ``metadata.resourceVersion`` in it, the API server applies it
        only if the object is still at that version (else 409 Conflict): optimistic concurrency."""
        return self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    def delete(self, path: str, *, propagation: str = "Background") -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return self.request("DELETE", path, body=body)


def matches_labels(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    """Client-side label filtering, so results are right even where the server ignores selectors."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
