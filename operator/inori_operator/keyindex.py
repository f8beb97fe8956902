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
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import kubernetes

from . import keys
from .informer import Informer
from .kube import secrets_path


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
        self._by_digest: dict[str, KeyEntry] = {}
        self._by_secret: dict[str, str] = {}  # secret name -> digest
        self._ready = threading.Event()
        self._informer = Informer(
            api_client, secrets_path(namespace), name="key-index", label_selector=SELECTOR,
            on_list=self._replace, on_change=self._change,
        )

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

    def start(self) -> None:
        self._informer.start()

    def stop(self) -> None:
        self._informer.stop()

    # -- fed by the informer (its thread) ------------------------------------------------------

    def _replace(self, secrets: list[dict[str, Any]]) -> None:
        by_digest: dict[str, KeyEntry] = {}
        by_secret: dict[str, str] = {}
        for secret in secrets:
            entry = entry_from_secret(secret)
            if entry is not None:
                by_digest[entry.digest] = entry
                by_secret[secret["metadata"]["name"]] = entry.digest
        self._by_digest, self._by_secret = by_digest, by_secret  # swapped whole: readers never see half
        self._ready.set()

    def _change(self, kind: str, secret: dict[str, Any]) -> None:
        name = secret["metadata"]["name"]
        digest = self._by_secret.pop(name, None)
        if digest is not None:
            self._by_digest.pop(digest, None)
        entry = entry_from_secret(secret) if kind != "DELETED" else None
        if entry is not None:
            self._by_digest[entry.digest] = entry
            self._by_secret[name] = entry.digest
