"""The operator's HTTP API (aiohttp): verify keys, accept events, health and metrics.

``/v1/verify`` is the hot path and is shaped like a ForwardAuth / auth_request / ext_authz
backend: it answers from memory, writes nothing synchronously, and every refusal is the same 401
body so a caller learns nothing about why a key failed beyond "malformed" vs "invalid".
Errors everywhere are ``{"error": "<code>", "message": "<sentence>"}``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from . import keys, metrics, supervision
from .models import EventType

if TYPE_CHECKING:
    from .app import Operator

log = logging.getLogger(__name__)

MAX_AUTHORIZATION_LENGTH = 256
MAX_HEADER_BYTES = 32 * 1024
_JSON = "application/json"
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="inori", error="invalid_token"'}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _unauthorized(code: str, message: str) -> web.Response:
    metrics.VERIFICATIONS.labels(code).inc()
    return error(401, code, message, _UNAUTHORIZED_HEADERS)


class EventIn(BaseModel):
    """The body of ``POST /v1/events``."""

    model_config = ConfigDict(extra="forbid")

    event: EventType
    data: dict[str, Any]
    timestamp: datetime | None = None


def _bearer(request: web.Request) -> str | web.Response:
    header = request.headers.get("Authorization")
    if not header:
        return _unauthorized("missing_credentials", "send the key as 'Authorization: Bearer <key>'")
    if len(header) > MAX_AUTHORIZATION_LENGTH:
        return _unauthorized("malformed_key", "the key is not in the format of an Inori API key")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return _unauthorized("missing_credentials", "only the Bearer scheme is accepted")
    token = token.strip()
    if not token:
        return _unauthorized("missing_credentials", "the Bearer token is empty")
    try:
        return keys.parse(token)
    except keys.MalformedKey:
        return _unauthorized("malformed_key", "the key is not in the format of an Inori API key")


class Api:
    def __init__(self, operator: Operator) -> None:
        self._op = operator

    def _authenticate(self, request: web.Request) -> Any:
        token = _bearer(request)
        if isinstance(token, web.Response):
            return token
        entry = self._op.keyindex.lookup(token)
        if entry is None:
            return _unauthorized("invalid_key", "the key is unknown, revoked or expired")
        metrics.VERIFICATIONS.labels("valid").inc()
        self._op.apikeys.usage.note(entry.namespace, entry.name)
        return entry

    async def verify(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        entry = self._authenticate(request)
        metrics.VERIFY_SECONDS.observe(time.perf_counter() - started)
        if isinstance(entry, web.Response):
            return entry
        return web.json_response(
            {"valid": True, "apiKey": {"namespace": entry.namespace, "name": entry.name, "label": entry.label}},
            headers={"X-Inori-Key-Namespace": entry.namespace, "X-Inori-Key-Name": entry.name},
        )

    async def events(self, request: web.Request) -> web.Response:
        entry = self._authenticate(request)
        if isinstance(entry, web.Response):
            metrics.EVENTS_ACCEPTED.labels("401").inc()
            return entry
        limit = self._op.settings.max_event_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._counted(error(413, "body_too_large", f"the body must be at most {limit} bytes"))
        try:
            raw = await request.content.read(limit + 1)
        except Exception:  # noqa: BLE001 - a broken upload is the client's error
            return self._counted(error(400, "unreadable_body", "the request body could not be read"))
        if len(raw) > limit:
            return self._counted(error(413, "body_too_large", f"the body must be at most {limit} bytes"))
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._counted(error(400, "malformed_json", f"the body is not valid JSON: {exc}"))
        try:
            event = EventIn.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            return self._counted(error(422, "invalid_event", f"{where}: {first.get('msg')}"))
        spec: dict[str, Any] = {"type": event.event, "data": event.data}
        if event.timestamp is not None:
            spec["timestamp"] = event.timestamp.isoformat().replace("+00:00", "Z")
        slug = re.sub(r"[^a-z0-9-]", "-", event.event)  # record.status_changed -> record-status-changed
        body = {
            "apiVersion": "integrations.inori.io/v1alpha1",
            "kind": "IntegrationEvent",
            "metadata": {
                "generateName": slug + "-",
                "labels": {"integrations.inori.io/api-key": entry.name, "integrations.inori.io/event-type": slug},
            },
            "spec": spec,
        }
        try:
            created = await self._op.kube.create("integrationevents", entry.namespace, body)
        except Exception as exc:  # noqa: BLE001 - tell the caller, keep serving
            log.warning("creating an IntegrationEvent for ApiKey %s/%s failed: %s", entry.namespace, entry.name, exc)
            status = getattr(exc, "status", 0)
            if status == 422:
                return self._counted(error(422, "invalid_event", str(exc)))
            return self._counted(error(503, "unavailable", "the event could not be stored; retry later"))
        metrics.EVENTS_ACCEPTED.labels("202").inc()
        return web.json_response({"namespace": entry.namespace, "name": created["metadata"]["name"]}, status=202)

    @staticmethod
    def _counted(response: web.Response) -> web.Response:
        metrics.EVENTS_ACCEPTED.labels(str(response.status)).inc()
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        if supervision.failures:
            return error(503, "unhealthy", "; ".join(supervision.failures)[:1024])
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self._op.keyindex.ready:
            return error(503, "not_ready", "the API-key index has not finished its first sync")
        return web.json_response({"status": "ready", "apiKeys": len(self._op.keyindex)})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own 404/405/413 answers, in our error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return error(exc.status, code, exc.reason or "request refused", {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None)


def build(operator: Operator) -> web.Application:
    api = Api(operator)
    app = web.Application(middlewares=[json_errors], client_max_size=operator.settings.max_event_body_bytes)
    app.router.add_get("/v1/verify", api.verify)
    app.router.add_post("/v1/verify", api.verify)
    app.router.add_post("/v1/events", api.events)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics)
    return app
