"""A list+watch loop (an informer) on a thread, outside kopf.

For the watches that must not go through kopf: the key index (every replica verifies, the standby
too, while kopf's watches pause on a standby) and Secrets (kopf would keep bookkeeping for every
Secret of the cluster, though only the few that Webhooks reference matter). Parsing happens on this
thread, off the event loop; the owner gets whole lists and single changes:

    on_list(items)          after every (re)list: the complete current set
    on_change(type, obj)    ADDED, MODIFIED or DELETED, in order

A watch that expires is renewed from its last resourceVersion (bookmarks keep that fresh); a
410 Gone relists at once; any other failure relists after a backoff of 0.5 s doubling to 30 s,
while the owner keeps serving what it has.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .kube import request

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300  # seconds per watch request before it is renewed

OnList = Callable[[list[dict[str, Any]]], None]
OnChange = Callable[[str, dict[str, Any]], None]


class Informer:
    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        path: str,
        *,
        name: str,
        on_list: OnList,
        on_change: OnChange,
        label_selector: str | None = None,
    ) -> None:
        self._api = api_client
        self._path = path
        self._name = name
        self._on_list = on_list
        self._on_change = on_change
        self._selector = {"labelSelector": label_selector} if label_selector else {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None  # the watch being read, for stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, closing the open watch: left open, it would hold up an API server's shutdown."""
        self._stopping.set()
        response = self._response
        if response is not None:
            response.shutdown()  # unblocks the watching thread's read at once

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                version = self._relist()
                while not self._stopping.is_set():
                    version = self._watch(version)
                    backoff = 0.5  # a watch that ran its course: the connection is healthy
            except ApiException as exc:
                if exc.status == 410:  # Gone: our version is too old; relist at once
                    continue
                log.warning("%s watch failed (%s %s); relisting in %.1fs", self._name, exc.status, exc.reason, backoff)
            except Exception as exc:  # noqa: BLE001 - keep serving the last good state, and retry
                if self._stopping.is_set():
                    break  # stop() closed the watch under us
                log.warning("%s watch failed (%s); relisting in %.1fs", self._name, exc, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 30)

    def _relist(self) -> str:
        result = request(self._api, "GET", self._path, query=self._selector)
        self._on_list(result.get("items") or [])
        return str(result["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        query = {
            **self._selector,
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_TIMEOUT),
            "allowWatchBookmarks": "true",
            "watch": "true",
        }
        response = self._response = request(self._api, "GET", self._path, query=query, stream=True)
        try:
            for event in _events(response):
                if self._stopping.is_set():
                    break
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_change(kind, obj)
                # BOOKMARK: only a newer resourceVersion, taken above
        finally:
            self._response = None
            response.release_conn()
        return version


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON lines of a watch answer, each as soon as it is complete."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
