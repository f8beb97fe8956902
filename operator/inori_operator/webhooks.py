"""Webhook reconciliation: is the configuration deliverable, and what does its status say.

Readiness is a chain of small named checks over gathered input (the cert-manager habit): the
spec parses, the referenced Secret and key exist and are non-empty, the URL passes the
destination policy. The first problem found becomes the ``Ready`` condition's reason.

The in-memory ``WebhookRegistry`` is fed by the watch and read by the delivery engine, so fan-out
never costs an API call.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import destinations
from .destinations import Destination, DestinationPolicy, DestinationRefused
from .kube import Kube
from .models import GROUP, VERSION, WebhookSpec
from .statuswriter import StatusWriter
from .webhook_status import (
    DESTINATION_NOT_ALLOWED,
    INVALID_SPEC,
    SECRET_EMPTY,
    SECRET_KEY_NOT_FOUND,
    SECRET_NOT_FOUND,
    Problem,
    WebhookState,
)
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

PLURAL = "webhooks"
RESOLVE_TTL = 30.0  # seconds a checked DNS answer is reused
Key = tuple[str, str]  # (namespace, name)

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Seen:
    """Every Webhook the watch knows, valid or not: its spec parsed once, when it changes.

    The watched object itself is not kept. With 10,000 Webhooks its parsed JSON would be most of
    the operator's memory, and nothing reads it after this.
    """

    uid: str
    generation: int
    spec: WebhookSpec | Problem


@dataclass(frozen=True, slots=True)
class Webhook:
    """What the delivery engine needs of one deliverable (parsed) Webhook."""

    namespace: str
    name: str
    uid: str
    spec: WebhookSpec

    def reference(self) -> dict[str, Any]:
        """Enough of the object to record a Kubernetes Event on it."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Webhook",
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


def check_spec(raw: dict[str, Any]) -> WebhookSpec | Problem:
    try:
        return WebhookSpec.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return Problem(INVALID_SPEC, f"spec.{where}: {first.get('msg')}")


def check_secret(spec: WebhookSpec, data: dict[str, bytes] | None) -> Problem | None:
    ref = spec.secret_ref
    if ref is None:
        return None
    if data is None:
        return Problem(SECRET_NOT_FOUND, f"Secret {ref.name!r} not found in this namespace")
    if ref.key not in data:
        return Problem(SECRET_KEY_NOT_FOUND, f"Secret {ref.name!r} has no key {ref.key!r}")
    if not data[ref.key]:
        return Problem(SECRET_EMPTY, f"Secret {ref.name!r} key {ref.key!r} is empty; an empty key signs nothing")
    return None


def _generation(body: dict[str, Any]) -> int:
    return int(body["metadata"].get("generation") or 1)


class WebhookRegistry:
    """Webhooks and the Secrets they reference, as last seen by the watches."""

    def __init__(self, kube: Kube, writer: StatusWriter, policy: DestinationPolicy) -> None:
        self._kube = kube
        self._writer = writer
        self._policy = policy
        self._seen: dict[Key, Seen] = {}
        self._ready: dict[Key, Webhook] = {}
        self._by_namespace: dict[str, set[str]] = defaultdict(set)
        self._secret_users: dict[Key, set[str]] = defaultdict(set)  # Secret -> Webhook names
        self._secret_of: dict[Key, Key] = {}  # Webhook -> the Secret it references
        self._resolved: dict[tuple[str, int], tuple[float, Destination]] = {}  # by host and port
        self._secrets: dict[Key, dict[str, bytes] | None] = {}
        self.states: dict[Key, WebhookState] = {}
        self.queue: WorkQueue[Key] = WorkQueue("webhooks", self.reconcile)

    # -- fed by the watches -------------------------------------------------------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Take a Webhook as the watch saw it; fan-out sees the change at once, checks follow."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._seen.pop(key, None)
            self._ready.pop(key, None)
            self._by_namespace[key[0]].discard(key[1])
            self.states.pop(key, None)  # a new Webhook of the same name starts afresh
            self._writer.forget((PLURAL, *key))
            self.queue.add(key)
            return
        uid, generation = meta.get("uid", ""), _generation(body)
        previous = self._seen.get(key)
        if key not in self.states:
            status = body.get("status")
            self.states[key] = WebhookState.from_status(generation, status)
            self._writer.seed((PLURAL, *key), status)
        if previous is not None and previous.uid == uid and previous.generation == generation:
            return  # only status or metadata changed (often our own write): nothing to re-check
        parsed = check_spec(body.get("spec") or {})
        self._seen[key] = Seen(uid, generation, parsed)
        if isinstance(parsed, WebhookSpec):
            self._ready[key] = Webhook(key[0], key[1], uid, parsed)
            self._by_namespace[key[0]].add(key[1])
        else:
            self._ready.pop(key, None)
            self._by_namespace[key[0]].discard(key[1])
        self.queue.add(key)

    def observe_secret(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        users = self._secret_users.get(key)
        if not users:
            return
        if event_type == "DELETED":
            self._secrets[key] = None
        else:
            self._secrets[key] = {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
        for name in list(users):
            self.queue.add((key[0], name))

    def resync_secrets(self, namespace: str | None, secrets: list[dict[str, Any]]) -> None:
        """Take a complete listing (of ``namespace``, or of the cluster): changes a broken watch
        missed, deletions included, reach the Webhooks that use those Secrets."""
        users = self._secret_users
        listed = {key: s for s in secrets if (key := (s["metadata"]["namespace"], s["metadata"]["name"])) in users}
        for key in list(users):
            if namespace is not None and key[0] != namespace:
                continue
            found = listed.get(key)
            if found is not None:
                self.observe_secret("MODIFIED", found)
            else:
                self.observe_secret("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})

    # -- read by the engine -------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Webhook | None:
        return self._ready.get((namespace, name))

    def exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._seen

    def subscribers(self, namespace: str, event_type: str) -> list[Webhook]:
        """Webhooks of ``namespace`` that take ``event_type`` now: parsed and not suspended."""
        found = []
        for name in sorted(self._by_namespace.get(namespace, ())):
            hook = self._ready.get((namespace, name))
            if hook and not hook.spec.suspend and event_type in hook.spec.events:
                found.append(hook)
        return found

    async def secret_value(self, hook: Webhook) -> bytes | None | Problem:
        """The signing key, or the Problem that prevents signing; None for an unsigned Webhook."""
        ref = hook.spec.secret_ref
        if ref is None:
            return None
        self._use_secret((hook.namespace, hook.name), ref.name)
        data = await self._secret(hook.namespace, ref.name)
        problem = check_secret(hook.spec, data)
        return problem or data[ref.key]  # type: ignore[index]

    @property
    def count(self) -> int:
        return len(self._seen)

    def phases(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for key in self._seen:
            state = self.states.get(key)
            if state and state.configured_generation is not None:
                counts[state.phase] += 1
        return dict(counts)

    async def destination(self, url: str) -> Destination:
        """The checked destination of ``url``; its host is resolved at most once per ``RESOLVE_TTL``.

        Shared by the reconciler (is the URL allowed?) and the sender (where to connect), so one
        DNS answer serves both, and every Webhook of one receiver host; raises ``DestinationRefused``.
        """
        scheme, host, port = destinations.check_scheme(self._policy, url)
        now = time.monotonic()
        cached = self._resolved.get((host, port))
        if cached is None or cached[0] <= now:
            cached = self._resolved[(host, port)] = (now + RESOLVE_TTL, await destinations.resolve(self._policy, url))
        found = cached[1]
        if found.url == url:
            return found
        return Destination(url=url, scheme=scheme, host=host, port=port, addresses=found.addresses)

    # -- reconcile ----------------------------------------------------------------------------

    def _use_secret(self, key: Key, secret: str | None) -> None:
        """Record which Secret a Webhook references, so the Secret watch knows whom to tell."""
        namespace, name = key
        old = self._secret_of.get(key)
        new = (namespace, secret) if secret else None
        if old == new:
            return
        if old is not None:
            users = self._secret_users.get(old)
            if users is not None:
                users.discard(name)
                if not users:
                    del self._secret_users[old]
                    self._secrets.pop(old, None)  # nobody reads it any more
        if new is None:
            self._secret_of.pop(key, None)
        else:
            self._secret_of[key] = new
            self._secret_users[new].add(name)

    async def _secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        key = (namespace, name)
        cached = self._secrets.get(key, _MISSING)
        if cached is _MISSING:
            cached = await self._kube.read_secret(namespace, name)
            self._secrets[key] = cached  # kept fresh by the Secret watch from now on
        return cached  # type: ignore[return-value]

    async def _check_destination(self, url: str) -> Problem | None:
        try:
            await self.destination(url)
        except DestinationRefused as exc:
            return Problem(DESTINATION_NOT_ALLOWED, f"{exc.reason}: {exc}")
        return None

    def _forget(self, key: Key) -> None:
        namespace, name = key
        self._ready.pop(key, None)
        self._by_namespace[namespace].discard(name)
        self.states.pop(key, None)
        self._writer.forget((PLURAL, namespace, name))
        self._use_secret(key, None)

    async def reconcile(self, key: Key) -> float | None:
        seen = self._seen.get(key)
        if seen is None:
            self._forget(key)
            return None
        namespace, name = key
        generation = seen.generation
        state = self.states.setdefault(key, WebhookState(generation=generation))

        parsed = seen.spec
        problem: Problem | None = parsed if isinstance(parsed, Problem) else None
        if isinstance(parsed, WebhookSpec):
            ref = parsed.secret_ref
            self._use_secret(key, ref.name if ref else None)
            if ref:
                problem = check_secret(parsed, await self._secret(namespace, ref.name))
            if problem is None:
                problem = await self._check_destination(parsed.url)
            state.suspended = parsed.suspend
        if problem and (state.problem != problem):
            log.info("Webhook %s/%s is Invalid: %s", namespace, name, problem.message)
        state.problem = problem
        state.generation = state.configured_generation = generation
        self._writer.mark((PLURAL, namespace, name), state.compose)
        return None
