"""Wiring: build every component from the settings, register the kopf handlers, run it all.

Handlers are thin on purpose: each one hands the object to the component that owns it. Reading
this file tells which watch feeds what.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from typing import Any

import kopf
from aiohttp import web

from . import http_api, metrics
from .alerts import EmailNotifier, LogNotifier
from .apikeys import PLURAL as APIKEYS, ApiKeyController
from .delivery.engine import PLURAL as EVENTS, Engine
from .delivery.sender import Sender, ssl_context
from .destinations import DestinationPolicy
from .informer import Informer
from .keyindex import KeyIndex
from .kube import Kube, secrets_path
from .models import GROUP, VERSION
from .settings import Settings
from .statuswriter import StatusWriter
from .webhooks import PLURAL as WEBHOOKS, WebhookRegistry

log = logging.getLogger(__name__)


class Operator:
    """Every long-lived component of one operator process."""

    def __init__(self, settings: Settings, kube: Kube | None = None) -> None:
        self.settings = settings
        self.kube = kube or Kube()
        self.policy = DestinationPolicy.from_cidrs(settings.allow_plain_http, settings.allowed_cidrs)
        self.writer = StatusWriter(
            self.kube,
            interval=settings.status_flush_interval,
            min_spacing={WEBHOOKS: settings.webhook_status_spacing},
        )
        self.webhooks = WebhookRegistry(self.kube, self.writer, self.policy)
        self.sender = Sender(
            ca_bundle=settings.ca_bundle,
            max_connections=settings.max_concurrent_deliveries,
            max_per_host=settings.max_concurrent_per_host,
            max_response_bytes=settings.max_response_bytes,
        )
        notifier = (
            EmailNotifier(
                host=settings.smtp_host,
                port=settings.smtp_port,
                starttls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value(),
                sender=settings.smtp_from,
                timeout=settings.smtp_timeout_seconds,
                ssl_context=ssl_context(settings.ca_bundle),
            )
            if settings.smtp_host
            else LogNotifier()
        )
        self.notifier = notifier
        self.engine = Engine(
            kube=self.kube,
            webhooks=self.webhooks,
            writer=self.writer,
            sender=self.sender,
            notifier=notifier,
            operator_recipients=settings.alert_recipients,
            retention=settings.event_retention,
            concurrency=settings.max_concurrent_deliveries,
            planned_status_delay=settings.event_status_delay,
        )
        self.keyindex = KeyIndex(self.kube.api_client, settings.namespace)
        self.apikeys = ApiKeyController(
            self.kube, self.writer, settings.namespace, usage_interval=settings.last_used_interval
        )
        self._quiesced = False
        metrics.LIVE.webhook_phases = self.webhooks.phases
        metrics.LIVE.active_keys = lambda: len(self.keyindex)

    def registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        webhooks, engine, apikeys = self.webhooks, self.engine, self.apikeys

        @kopf.on.login(registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            return kopf.login_with_kubeconfig(**kwargs) or kopf.login_with_service_account(**kwargs)

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.posting.level = logging.WARNING  # our own Events say what matters
            settings.watching.server_timeout = 300
            settings.watching.client_timeout = 330
            settings.networking.error_backoffs = [1, 2, 5, 10]
            settings.scanning.disabled = True  # serve the CRDs present at start; no CRD/namespace RBAC
            settings.peering.name = self.settings.peering_name
            # Two replicas without peering would both deliver: when peering is on, it is required.
            settings.peering.mandatory = not self.settings.standalone
            settings.peering.standalone = self.settings.standalone
            # kopf pauses a peer that sees an equal or higher priority, so equal priorities would
            # pause every replica. The oldest replica wins: a rolling update never steals the lead.
            settings.peering.priority = -int(time.time() * 1000)
            settings.peering.lifetime = self.settings.peering_lifetime
            settings.persistence.diffbase_storage = _NoDiffBase()
            settings.persistence.progress_storage = _NoProgress()

        # Every handler is ``async``: kopf runs plain functions in a thread pool, and the registry,
        # the engine and the queues belong to the event loop (they are not thread-safe).

        # An index makes kopf hold every other handler until all Webhooks are listed, so an event
        # created while the operator was down is never planned against a half-known set of hooks.
        @kopf.index(GROUP, VERSION, WEBHOOKS, registry=registry)
        async def webhook_index(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[str, str]:
            webhooks.observe(None, _raw(body))
            return {namespace: name}

        @kopf.on.event(GROUP, VERSION, WEBHOOKS, registry=registry)
        async def webhook_event(event: kopf.RawEvent, **_: Any) -> None:
            if event["type"] == "DELETED":
                webhooks.observe("DELETED", event["object"])

        @kopf.on.event(GROUP, VERSION, EVENTS, registry=registry)
        async def integration_event(event: kopf.RawEvent, **_: Any) -> None:
            engine.observe(event["type"], event["object"])

        @kopf.on.event(GROUP, VERSION, APIKEYS, registry=registry)
        async def apikey_event(event: kopf.RawEvent, **_: Any) -> None:
            apikeys.observe(event["type"], event["object"])

        return registry

    async def run(self, stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
        """Serve the HTTP API on every replica; run the controllers under kopf (peered).

        Shutdown is ordered: our components finish and flush first, kopf stops last. Left to
        itself, kopf (which takes SIGINT and SIGTERM once it runs) would stop first, wait 5 s for
        the tasks it did not start (ours) and then cancel them, status writes in flight included.
        """
        self.keyindex.start()
        secrets = self._secret_informers(asyncio.get_running_loop())
        for informer in secrets:
            informer.start()
        runner = web.AppRunner(
            http_api.build(self),
            access_log=None,
            handle_signals=False,
            max_field_size=http_api.MAX_HEADER_BYTES,  # an oversized token earns our 401, not a parser 400
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        log.info("HTTP API listening on %s:%d", self.settings.http_host, self.settings.http_port)
        for component in (self.writer, self.webhooks.queue, self.engine, self.apikeys.queue, self.apikeys.usage):
            component.start()
        kopf_stop, kopf_ready = asyncio.Event(), asyncio.Event()
        operator = asyncio.create_task(kopf.operator(
            registry=self.registry(),
            clusterwide=not self.settings.watch_namespaces,
            namespaces=list(self.settings.watch_namespaces),
            standalone=self.settings.standalone or None,
            stop_flag=kopf_stop,
            ready_flag=kopf_ready,
        ))
        # Created before kopf first runs, so kopf counts them as not its own and leaves them be.
        requested = asyncio.ensure_future((stop_flag or asyncio.Event()).wait())
        started = asyncio.ensure_future(self._started(kopf_ready, stop_flag, ready_flag))
        try:
            await asyncio.wait({operator, requested}, return_when=asyncio.FIRST_COMPLETED)
            if not operator.done():
                log.info("stopping: finishing deliveries in flight and writing status, then kopf")
                await self.quiesce()
                kopf_stop.set()
            await operator
        finally:
            requested.cancel()
            started.cancel()
            if not operator.done():  # we were cancelled ourselves
                kopf_stop.set()
                await asyncio.gather(operator, return_exceptions=True)
            await self.quiesce()
            await runner.cleanup()
            await self.sender.aclose()
            self.keyindex.stop()
            for informer in secrets:
                informer.stop()
            self.kube.close()

    def _secret_informers(self, loop: asyncio.AbstractEventLoop) -> list[Informer]:
        """Signing Secrets reach the registry from our own informers, not kopf's.

        Only the few Secrets that Webhooks reference matter; through kopf, every Secret of the
        cluster would get its bookkeeping (the API keys' hash Secrets included). Changes hop to the
        event loop, which owns the registry.
        """
        scopes: list[str | None] = list(self.settings.watch_namespaces) or [None]
        return [
            Informer(
                self.kube.api_client,
                secrets_path(scope) if scope else "/api/v1/secrets",
                name=f"secrets-{scope or 'all'}",
                on_list=lambda items, scope=scope: loop.call_soon_threadsafe(self.webhooks.resync_secrets, scope, items),
                on_change=lambda kind, obj: loop.call_soon_threadsafe(self.webhooks.observe_secret, kind, obj),
            )
            for scope in scopes
        ]

    @staticmethod
    async def _started(kopf_ready: asyncio.Event, stop_flag: asyncio.Event | None, ready_flag: asyncio.Event | None) -> None:
        await kopf_ready.wait()
        if stop_flag is not None and threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):  # kopf installed its own: take them back
                loop.add_signal_handler(sig, stop_flag.set)
        if ready_flag is not None:
            ready_flag.set()

    async def quiesce(self) -> None:
        """Start no new work, let work in flight finish, write every recorded outcome. Idempotent."""
        if self._quiesced:
            return
        self._quiesced = True
        await self.engine.stop()
        await self.apikeys.queue.stop()
        await self.webhooks.queue.stop()
        await self.apikeys.usage.stop()
        await self.writer.stop()
        await self.notifier.drain()


class _NoDiffBase(kopf.DiffBaseStorage):
    """Nothing to diff: no handler here reacts to changes (kopf's on.create/update/field).

    kopf's default deep-copies every watched object on every event to diff it against a
    last-handled-configuration annotation (2-3 % of the operator's CPU in a delivery burst, by
    py-spy), and such an annotation would be a change on the user's objects.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class _NoProgress(kopf.ProgressStorage):
    """No kopf handler progress to keep: every handler here is a plain ``on.event`` or index."""

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        pass

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        pass

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        pass

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def _raw(body: kopf.Body) -> dict[str, Any]:
    return {key: body[key] for key in body}

