"""The in-memory verifier index: key hash → which ApiKey it belongs to.

Fed by a list+watch (an informer) of the hash Secrets in the operator's own namespace that carry
the operator's labels, and nothing else: a look-alike Secret in a tenant namespace is never even
listed. It runs outside kopf's peering, so every replica answers verifications, the standby too.
A revoked or deleted key's Secret disappears from the watch in milliseconds; an expired key is
refused by the lookup itself, with no write needed at all.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import keys
from .kube import request, secrets_path

log = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "inori-operator"
COMPONENT = "integrations.inori.io/component"
HASH_COMPONENT = "api-key-hash"
APIKEY_UID = "integrations.inori.io/apikey-uid"
APIKEY_NAMESPACE = "integrations.inori.io/apikey-namespace"
APIKEY_NAME = "integrations.inori.io/apikey-name"
APIKEY_LABEL = "integrations.inori.io/apikey-label"
EXPIRES_AT = "integrations.inori.io/expires-at"
HASH_KEY = "sha256"
SELECTOR = f"{MANAGED_BY}={MANAGER},{COMPONENT}={HASH_COMPONENT}"

WATCH_TIMEOUT = 300  # seconds per watch request before it is renewed


@dataclass(frozen=True)
class KeyEntry:
    namespace: str
    name: str
    uid: str
    label: str
    expires_at: datetime | None
    digest: str

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def entry_from_secret(secret: dict[str, Any]) -> KeyEntry | None:
    """A hash Secret as an index entry; None when it lacks a field (never trust a partial one)."""
    meta = secret.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    raw = (secret.get("data") or {}).get(HASH_KEY)
    namespace, name, uid = annotations.get(APIKEY_NAMESPACE), annotations.get(APIKEY_NAME), labels.get(APIKEY_UID)
    if not (raw and namespace and name and uid):
        return None
    try:
        digest = base64.b64decode(raw).decode("ascii")
        expires = annotations.get(EXPIRES_AT)
        expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None
    except ValueError:
        return None
    return KeyEntry(namespace, name, uid, annotations.get(APIKEY_LABEL, ""), expires_at, digest)


class KeyIndex:
    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str) -> None:
        self._api = api_client
        self._namespace = namespace
        self._by_digest: dict[str, KeyEntry] = {}
        self._by_secret: dict[str, str] = {}  # secret name -> digest
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None  # the watch being read, for stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, key: str, now: datetime | None = None) -> KeyEntry | None:
        """The entry for a well-formed, known, unexpired key; None otherwise.

        The dictionary is keyed by the SHA-256 of the key, so its timing reveals nothing about
        the key itself; the final comparison is constant-time all the same.
        """
        digest = keys.hash_key(key)
        entry = self._by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        if entry.expired(now or datetime.now(timezone.utc)):
            return None
        return entry

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- the informer -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="key-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, closing the open watch: left open, it would hold up an API server's shutdown."""
        self._stopping.set()
        response = self._response
        if response is not None:
            response.shutdown()  # unblocks the watching thread's read at once

    def _put(self, secret: dict[str, Any]) -> None:
        name = secret["metadata"]["name"]
        self._remove(name)
        entry = entry_from_secret(secret)
        if entry is not None:
            self._by_digest[entry.digest] = entry
            self._by_secret[name] = entry.digest

    def _remove(self, name: str) -> None:
        digest = self._by_secret.pop(name, None)
        if digest is not None:
            self._by_digest.pop(digest, None)

    def _relist(self) -> str:
        result = request(self._api, "GET", secrets_path(self._namespace), query={"labelSelector": SELECTOR})
        by_digest: dict[str, KeyEntry] = {}
        by_secret: dict[str, str] = {}
        for secret in result.get("items") or []:
            entry = entry_from_secret(secret)
            if entry is not None:
                by_digest[entry.digest] = entry
                by_secret[secret["metadata"]["name"]] = entry.digest
        self._by_digest, self._by_secret = by_digest, by_secret  # swapped whole: readers never see half
        self._ready.set()
        return str(result["metadata"]["resourceVersion"])

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
                log.warning("key index watch failed (%s %s); relisting in %.1fs", exc.status, exc.reason, backoff)
            except Exception as exc:  # noqa: BLE001 - keep serving the last good index, and retry
                if self._stopping.is_set():
                    break  # stop() closed the watch under us
                log.warning("key index watch failed (%s); relisting in %.1fs", exc, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 30)

    def _watch(self, version: str) -> str:
        query = {
            "labelSelector": SELECTOR,
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_TIMEOUT),
            "allowWatchBookmarks": "true",
            "watch": "true",
        }
        response = self._response = request(self._api, "GET", secrets_path(self._namespace), query=query, stream=True)
        try:
            for event in _events(response):
                if self._stopping.is_set():
                    break
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "DELETED":
                    self._remove(obj["metadata"]["name"])
                elif kind in ("ADDED", "MODIFIED"):
                    self._put(obj)
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
