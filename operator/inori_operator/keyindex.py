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
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import keys

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


def entry_from_secret(secret: Any) -> KeyEntry | None:
    """A hash Secret as an index entry; None when it lacks a field (never trust a partial one)."""
    meta = secret.metadata
    annotations = meta.annotations or {}
    labels = meta.labels or {}
    raw = (secret.data or {}).get(HASH_KEY)
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
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._namespace = namespace
        self._by_digest: dict[str, KeyEntry] = {}
        self._by_secret: dict[str, str] = {}  # secret name -> digest
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

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
        self._stopping.set()

    def _put(self, secret: Any) -> None:
        name = secret.metadata.name
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
        result = self._core.list_namespaced_secret(self._namespace, label_selector=SELECTOR)
        by_digest: dict[str, KeyEntry] = {}
        by_secret: dict[str, str] = {}
        for secret in result.items:
            entry = entry_from_secret(secret)
            if entry is not None:
                by_digest[entry.digest] = entry
                by_secret[secret.metadata.name] = entry.digest
        self._by_digest, self._by_secret = by_digest, by_secret  # swapped whole: readers never see half
        self._ready.set()
        return str(result.metadata.resource_version)

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
                log.warning("key index watch failed (%s); relisting in %.1fs", exc, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 30)

    def _watch(self, version: str) -> str:
        watch = kubernetes.watch.Watch()
        for event in watch.stream(
            self._core.list_namespaced_secret,
            self._namespace,
            label_selector=SELECTOR,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT,
            allow_watch_bookmarks=True,
        ):
            if self._stopping.is_set():
                watch.stop()
                break
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                raw = event.get("raw_object") or {}
                raise ApiException(status=raw.get("code", 500), reason=raw.get("message", "watch error"))
            if kind == "BOOKMARK":  # only a newer resourceVersion; the client leaves it a dict
                raw = event.get("raw_object") or {}
                version = (raw.get("metadata") or {}).get("resourceVersion") or version
                continue
            version = obj.metadata.resource_version or version
            if kind == "DELETED":
                self._remove(obj.metadata.name)
            elif kind in ("ADDED", "MODIFIED"):
                self._put(obj)
        return version
