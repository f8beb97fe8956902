"""ApiKey reconciliation: issue a key once, keep only its hash, revoke and expire it for good.

Issuing writes two Secrets, in an order chosen so that a crash between them is harmless:

1. the plaintext, into the tenant's Secret (owned by the ApiKey), then
2. the SHA-256 hash, into ``apikey-<uid>`` in the operator's namespace (a name derived from the
   ApiKey's uid, so a retry can only ever find or create that one Secret).

If the operator dies after (1), the next reconcile finds the owned plaintext Secret and hashes
*that* key rather than minting a second one; so there is never a valid key nobody holds, nor two
valid keys. Once the hash exists the key counts as issued: a deleted plaintext Secret is not
recreated, since the key must never be shown twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from . import keyindex as ki
from . import keys
from .conditions import set_condition, timestamp
from .kube import Conflict, Kube, NotFound, slim
from .models import API_VERSION, ApiKeySpec
from .statuswriter import StatusWriter
from .supervision import spawn
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

PLURAL = "apikeys"
KIND = "ApiKey"
FINALIZER = "integrations.inori.io/api-key-hash"
PLAINTEXT_KEY = "api-key"
ACTIVE, REVOKED, EXPIRED = "Active", "Revoked", "Expired"

# Condition reasons.
ISSUED = "KeyIssued"
REVOKED_REASON = "Revoked"
EXPIRED_REASON = "Expired"
SECRET_CONFLICT = "SecretNameConflict"
INVALID_SPEC = "InvalidSpec"
HASH_MISSING = "KeyHashMissing"

Key = tuple[str, str]


def hash_secret_name(uid: str) -> str:
    return f"apikey-{uid}"


def _owned_by(secret: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in secret["metadata"].get("ownerReferences") or [])


class ApiKeyController:
    def __init__(
        self, kube: Kube, writer: StatusWriter, operator_namespace: str, usage_interval: float = 60.0
    ) -> None:
        self._kube = kube
        self._writer = writer
        self._namespace = operator_namespace
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._conditions: dict[Key, list[dict[str, Any]]] = {}
        self.queue: WorkQueue[Key] = WorkQueue("apikeys", self.reconcile)
        self.usage = UsageRecorder(writer, usage_interval)

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._bodies.pop(key, None)
            self._conditions.pop(key, None)
            self._writer.forget((PLURAL, *key))
        else:
            self._bodies[key] = slim(body)
        self.queue.add(key)

    # -- reconcile ----------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        body = self._bodies.get(key)
        if body is None:
            return None
        meta = body["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            await self._kube.delete_secret(self._namespace, hash_secret_name(uid))
            await self._set_finalizer(body, present=False)
            return None
        if FINALIZER not in (meta.get("finalizers") or []):
            await self._set_finalizer(body, present=True)
            return None  # the watch brings the updated object back to us
        generation = int(meta.get("generation") or 1)
        status = body.get("status") or {}
        self._writer.seed((PLURAL, *key), status or None)
        try:
            spec = ApiKeySpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            self._publish(key, generation, {}, "False", INVALID_SPEC, str(exc.errors()[0].get("msg")))
            return None

        now = datetime.now(timezone.utc)
        if spec.revoked or (spec.expires_at and spec.expires_at <= now):
            removed = await self._kube.delete_secret(self._namespace, hash_secret_name(uid))
            if removed:
                log.info("ApiKey %s/%s %s: hash removed", *key, "revoked" if spec.revoked else "expired")
            phase = REVOKED if spec.revoked else EXPIRED
            fields: dict[str, Any] = {"phase": phase}
            if spec.revoked:
                fields["revokedAt"] = status.get("revokedAt") or timestamp(now)
            reason = REVOKED_REASON if spec.revoked else EXPIRED_REASON
            message = "the key was revoked and no longer verifies" if spec.revoked else "the key expired and no longer verifies"
            self._publish(key, generation, fields, "False", reason, message)
            return None

        issued = await self._ensure_issued(body, spec)
        if isinstance(issued, tuple):
            self._publish(key, generation, {}, "False", *issued)
            return None
        fields = {"phase": ACTIVE, "prefix": issued, "secretName": status.get("secretName") or spec.plaintext_secret_name(key[1])}
        if spec.expires_at:
            fields["expiresAt"] = timestamp(spec.expires_at)
        self._publish(key, generation, fields, "True", ISSUED, "the key is active; its plaintext was written once to the Secret")
        if spec.expires_at:  # expire on time even if nothing else happens to the object
            return max(0.0, (spec.expires_at - now).total_seconds()) + 0.05
        return None

    async def _ensure_issued(self, body: dict[str, Any], spec: ApiKeySpec) -> str | tuple[str, str]:
        """The display prefix of the issued key, issuing it if needed; or (reason, message)."""
        meta, status = body["metadata"], body.get("status") or {}
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        hash_name = hash_secret_name(uid)
        existing = await self._kube.get_secret(self._namespace, hash_name)
        if existing is not None:
            await self._refresh_hash_metadata(existing, body, spec)
            stored = base64.b64decode((existing.get("data") or {}).get("prefix", "")).decode()
            return status.get("prefix") or stored or keys.PREFIX
        if status.get("prefix"):
            return (HASH_MISSING, f"the hash Secret {self._namespace}/{hash_name} was deleted; this key can no longer "
                                  "be verified. Create a new ApiKey.")

        secret_name = spec.plaintext_secret_name(name)
        plaintext = await self._read_owned_plaintext(namespace, secret_name, uid)
        if isinstance(plaintext, tuple):
            return plaintext
        if plaintext is None:
            plaintext = keys.generate()
            try:
                await self._kube.create_secret(namespace, self._plaintext_secret(body, secret_name, plaintext))
            except Conflict:  # created meanwhile (by us, a moment ago): adopt what is there
                adopted = await self._read_owned_plaintext(namespace, secret_name, uid)
                if adopted is None or isinstance(adopted, tuple):
                    return adopted or (SECRET_CONFLICT, f"Secret {secret_name!r} appeared while issuing the key")
                plaintext = adopted
        try:
            await self._kube.create_secret(self._namespace, self._hash_secret(body, spec, hash_name, plaintext))
        except Conflict:
            pass  # a concurrent reconcile wrote the same deterministic Secret
        prefix = keys.display_prefix(plaintext)
        log.info("ApiKey %s/%s issued (prefix %s)", namespace, name, prefix)
        return prefix

    async def _read_owned_plaintext(self, namespace: str, secret_name: str, uid: str) -> str | None | tuple[str, str]:
        secret = await self._kube.get_secret(namespace, secret_name)
        if secret is None:
            return None
        if not _owned_by(secret, uid):
            return (SECRET_CONFLICT, f"Secret {secret_name!r} already exists and is not owned by this ApiKey; "
                                     "set spec.secretName to a free name")
        raw = (secret.get("data") or {}).get(PLAINTEXT_KEY)
        plaintext = base64.b64decode(raw).decode("ascii", "replace") if raw else ""
        if not keys.is_well_formed(plaintext):
            return (SECRET_CONFLICT, f"Secret {secret_name!r} is owned by this ApiKey but holds no valid key")
        return plaintext

    def _plaintext_secret(self, body: dict[str, Any], secret_name: str, plaintext: str) -> dict[str, Any]:
        meta = body["metadata"]
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": meta["namespace"],
                "labels": {ki.MANAGED_BY: ki.MANAGER, ki.COMPONENT: "api-key"},
                "annotations": {"integrations.inori.io/note": "shown once: the operator never writes this key again"},
                "ownerReferences": [
                    {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
                     "controller": True, "blockOwnerDeletion": False}
                ],
            },
            "data": {PLAINTEXT_KEY: base64.b64encode(plaintext.encode()).decode()},
        }

    def _hash_metadata(self, body: dict[str, Any], spec: ApiKeySpec) -> dict[str, Any]:
        meta = body["metadata"]
        annotations = {ki.APIKEY_NAMESPACE: meta["namespace"], ki.APIKEY_NAME: meta["name"], ki.APIKEY_LABEL: spec.label}
        if spec.expires_at:
            annotations[ki.EXPIRES_AT] = timestamp(spec.expires_at)
        return {
            "labels": {ki.MANAGED_BY: ki.MANAGER, ki.COMPONENT: ki.HASH_COMPONENT, ki.APIKEY_UID: meta["uid"]},
            "annotations": annotations,
        }

    def _hash_secret(self, body: dict[str, Any], spec: ApiKeySpec, hash_name: str, plaintext: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "immutable": False,
            "metadata": {"name": hash_name, "namespace": self._namespace, **self._hash_metadata(body, spec)},
            "data": {
                ki.HASH_KEY: base64.b64encode(keys.hash_key(plaintext).encode()).decode(),
                "prefix": base64.b64encode(keys.display_prefix(plaintext).encode()).decode(),
            },
        }

    async def _refresh_hash_metadata(self, secret: dict[str, Any], body: dict[str, Any], spec: ApiKeySpec) -> None:
        """Keep label and expiry on the hash Secret in step with the spec (both may change)."""
        wanted: dict[str, str | None] = dict(self._hash_metadata(body, spec)["annotations"])
        wanted.setdefault(ki.EXPIRES_AT, None)  # an expiry removed from the spec is removed here too
        have = secret["metadata"].get("annotations") or {}
        if all(have.get(k) == v for k, v in wanted.items()):
            return
        await self._kube.patch_secret(self._namespace, secret["metadata"]["name"], {"metadata": {"annotations": wanted}})

    async def _set_finalizer(self, body: dict[str, Any], *, present: bool) -> None:
        meta = body["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        if present:
            finalizers.append(FINALIZER)
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        try:
            await self._kube.patch(PLURAL, meta["namespace"], meta["name"], patch)
        except NotFound:
            pass

    def _publish(self, key: Key, generation: int, fields: dict[str, Any], ready: str, reason: str, message: str) -> None:
        conditions = set_condition(self._conditions.get(key) or (self._bodies.get(key, {}).get("status") or {}).get("conditions"),
                                   "Ready", ready, reason, message, generation)  # type: ignore[arg-type]
        self._conditions[key] = conditions
        status = {"observedGeneration": generation, "conditions": conditions, **fields}
        self._writer.mark((PLURAL, *key), lambda: status)


class UsageRecorder:
    """Notes when keys are used and writes ``lastUsedAt`` at most once per interval per key.

    Verification traffic stays in memory; the API server sees one small status patch per key
    per minute at most, however many requests a key serves.
    """

    def __init__(self, writer: StatusWriter, interval: float = 60.0) -> None:
        self._writer = writer
        self.interval = interval
        self._written: dict[Key, float] = {}
        self._pending: dict[Key, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._pending[key] = datetime.now(timezone.utc)
        if time.monotonic() - self._written.get(key, -1e9) >= self.interval:
            self._flush_one(key)

    def _flush_one(self, key: Key) -> None:
        when = self._pending.pop(key, None)
        if when is None:
            return
        self._written[key] = time.monotonic()
        stamp = timestamp(when.replace(microsecond=0))
        self._writer.mark((PLURAL, *key), lambda: {"lastUsedAt": stamp}, part="usage")

    def start(self) -> None:
        self._task = spawn(self._run(), name="apikey-usage")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for key in list(self._pending):
            self._flush_one(key)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval, 5.0))
            now = time.monotonic()
            for key in [k for k in self._pending if now - self._written.get(k, -1e9) >= self.interval]:
                self._flush_one(key)
