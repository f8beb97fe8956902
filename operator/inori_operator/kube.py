"""The one gateway through which our code (as opposed to kopf's watches) talks to the API server.

The official ``kubernetes`` client is synchronous; calls run on a small dedicated thread pool so
the event loop never blocks, and its errors are translated once into the tree below::

    KubeError                 anything else: retry later
     ├── NotFound             the object is gone: usually nothing left to do
     └── Conflict             someone else changed or created it: re-read and retry
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import __version__
from .conditions import timestamp
from .models import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """An API call failed for a reason that may go away; the caller retries later."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


def _translate(exc: ApiException) -> KubeError:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason
    message = str(message)[:512]
    if exc.status == 404:
        return NotFound(message, 404)
    if exc.status == 409:
        return Conflict(message, 409)
    return KubeError(message, exc.status or 0)


_HEAVY_METADATA = ("managedFields",)
_HEAVY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """A watched object without the bookkeeping we never read (managedFields, last-applied).

    Those are often most of an object's size; dropping them keeps 10,000 Webhooks in memory cheap.
    """
    meta = {k: v for k, v in body.get("metadata", {}).items() if k not in _HEAVY_METADATA}
    annotations = meta.get("annotations")
    if annotations and any(a in annotations for a in _HEAVY_ANNOTATIONS):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _HEAVY_ANNOTATIONS}
    return {**body, "metadata": meta}


def secrets_path(namespace: str, name: str | None = None) -> str:
    return "/api/v1/namespaces/" + _path(namespace, "secrets", *([name] if name else []))


def request(
    api_client: kubernetes.client.ApiClient, method: str, path: str, *, body: Any = None,
    query: dict[str, str] | None = None, content_type: str = "application/json", parse: bool = True,
    stream: bool = False,
) -> Any:
    """One blocking API call: parsed JSON (or None when ``parse`` is off, or the raw response to
    read from when ``stream`` is on); a non-2xx answer raises ``ApiException``."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    serialized = api_client.param_serialize(
        method, path, query_params=list(query.items()) if query else None, header_params=headers, body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*serialized)
    if stream and 200 <= response.status <= 299:
        return response.response
    # Read to the end even when the answer is not wanted: unread, it would stay on the pooled
    # connection and be taken for the next request's answer.
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return json.loads(data) if parse else None


def load_config() -> kubernetes.client.ApiClient:
    """In-cluster config in a Pod, else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        # The client reads KUBECONFIG once, at import; `inori-operator dev` sets it later.
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = f"inori-operator/{__version__}"  # also our field manager in managedFields
    return client


def _path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


class Kube:
    """Async facade over the sync client: only the calls the operator needs.

    Calls go through ``ApiClient`` (its configuration, authentication, TLS and connection pool)
    with paths written here, and answers are plain parsed JSON. The generated ``CoreV1Api`` is not
    used: importing it costs 20 MB of memory and half a second, for the five Secret calls we make,
    and its typed models would be turned back into dicts anyway.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None, workers: int = 16) -> None:
        self.api_client = api_client or load_config()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    async def _request(
        self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
        content_type: str = "application/json", parse: bool = True,
    ) -> Any:
        """``request`` on the gateway's thread pool, its errors translated."""
        call = functools.partial(request, self.api_client, method, path, body=body, query=query,
                                 content_type=content_type, parse=parse)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except ApiException as exc:
            raise _translate(exc) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    # -- our custom resources -----------------------------------------------------------------

    @staticmethod
    def _custom(namespace: str, plural: str, *rest: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/" + _path(namespace, plural, *rest)

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self._custom(namespace, plural, name))

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._custom(namespace, plural), body=body)

    async def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", self._custom(namespace, plural, name), body=patch, content_type=MERGE_PATCH)

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch ``status`` only: the operator never writes ``spec``.

        The answer (the whole object) is read but not parsed: on the hot path of a burst, parsing
        what we just wrote would cost CPU and memory for nothing.
        """
        await self._request("PATCH", self._custom(namespace, plural, name, "status"), body={"status": status},
                            content_type=MERGE_PATCH, parse=False)

    async def delete(self, plural: str, namespace: str, name: str, uid: str | None = None) -> None:
        body = {"preconditions": {"uid": uid}} if uid else None
        await self._request("DELETE", self._custom(namespace, plural, name), body=body)

    # -- Secrets ------------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The decoded data of a Secret, or None when it does not exist."""
        secret = await self.get_secret(namespace, name)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The whole Secret object (metadata included), or None when it does not exist."""
        try:
            return await self._request("GET", secrets_path(namespace, name))
        except NotFound:
            return None

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._request("PATCH", secrets_path(namespace, name), body=patch, content_type=MERGE_PATCH, parse=False)

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        await self._request("POST", secrets_path(namespace), body=body, parse=False)

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await self._request("DELETE", secrets_path(namespace, name), parse=False)
        except NotFound:
            return False
        return True

    # -- Events -------------------------------------------------------------------------------

    async def record_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on ``obj`` so that ``kubectl describe`` shows it; failures are not fatal."""
        meta = obj["metadata"]
        now = timestamp()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "inori-operator"},
            "reportingComponent": "inori-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("POST", "/api/v1/namespaces/" + _path(meta["namespace"], "events"), body=body, parse=False)
