"""The delivery engine: fan out each IntegrationEvent, attempt, retry on schedule, record, alert.

Durable state lives in the IntegrationEvent's status (attempts, next attempt time per webhook);
memory holds only a schedule derived from it. After a restart or failover the watch's initial
listing replays every unfinished event, and each delivery resumes at its recorded time. Outcomes
are written in batches by the ``StatusWriter``; a crash between a send and its write re-sends that
one attempt with the same ``X-Inori-Delivery`` id (at-least-once, receivers de-duplicate).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import metrics, retry, signing
from ..alerts import FailingAlert, Notifier, recipients
from ..conditions import timestamp
from ..destinations import DestinationRefused
from ..kube import Conflict, Kube, KubeError, NotFound
from ..statuswriter import StatusWriter
from ..supervision import spawn
from ..webhook_status import DESTINATION_NOT_ALLOWED, Problem
from ..webhooks import PLURAL as WEBHOOKS, Webhook, WebhookRegistry
from . import plan
from .plan import EventState, Record
from .sender import USER_AGENT, Sender

log = logging.getLogger(__name__)

PLURAL = "integrationevents"
EventKey = tuple[str, str]

SUSPENDED_RECHECK = 5.0  # seconds between checks of a suspended Webhook's held retry
SHUTDOWN_GRACE = 5.0  # seconds attempts in flight get to finish when the operator stops


@dataclass(order=True)
class _Due:
    when: float
    seq: int
    event: EventKey
    webhook: str | None  # None: the retention timer of a finished event


class Engine:
    def __init__(
        self,
        *,
        kube: Kube,
        webhooks: WebhookRegistry,
        writer: StatusWriter,
        sender: Sender,
        notifier: Notifier,
        operator_recipients: list[str],
        retention: timedelta,
        concurrency: int = 256,
        planned_status_delay: float = 5.0,
    ) -> None:
        self._kube = kube
        self._webhooks = webhooks
        self._writer = writer
        self._sender = sender
        self._notifier = notifier
        self._operator_recipients = operator_recipients
        self._retention = retention
        self._limit = asyncio.Semaphore(concurrency)
        self._planned_status_delay = planned_status_delay
        self._events: dict[EventKey, EventState] = {}
        self._conditions: dict[EventKey, list[dict[str, Any]]] = {}
        self._ttl: dict[EventKey, int | None] = {}
        # Finished events awaiting deletion: only their uid stays in memory, not their records.
        self._finished: dict[EventKey, str] = {}
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        metrics.LIVE.pending_retries = self.pending_retries

    # -- watch input --------------------------------------------------------------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._drop(key)
            return
        known = self._events.get(key)
        uid = known.uid if known is not None else self._finished.get(key)
        if uid == meta.get("uid"):
            return  # we are the only writer of its status: nothing new to learn
        if uid is not None:
            self._drop(key)  # same name, new object
        self._load(body)

    def _drop(self, key: EventKey) -> None:
        self._release(key)
        self._finished.pop(key, None)
        self._writer.forget((PLURAL, *key))

    def _release(self, key: EventKey) -> None:
        """Forget a finished event's records once its final status is composed."""
        self._events.pop(key, None)
        self._conditions.pop(key, None)
        self._ttl.pop(key, None)

    def _load(self, body: dict[str, Any]) -> None:
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        key = (meta["namespace"], meta["name"])
        event_type = spec.get("type", "")
        state = EventState(
            namespace=key[0],
            name=key[1],
            uid=meta["uid"],
            event_type=event_type,
            body=plan.build_body(meta["uid"], event_type, plan.event_timestamp(spec, meta), spec.get("data") or {}),
            generation=int(meta.get("generation") or 1),
            finished_time=status.get("finishedTime"),
        )
        self._events[key] = state
        self._conditions[key] = list(status.get("conditions") or [])
        self._ttl[key] = spec.get("ttlSecondsAfterFinished")
        self._writer.seed((PLURAL, *key), status or None)
        if status.get("deliveries") is not None or status.get("phase") in ("Delivered", "Failed"):
            state.planned = True
            state.records = {r["webhook"]: Record.from_status(r) for r in status.get("deliveries") or []}
            now = datetime.now(timezone.utc)
            for record in state.records.values():
                if not record.final:
                    when = plan.parse_time(record.next_attempt_time) or now
                    self._schedule(key, record.webhook, when)
            if state.finished:
                self._finish(state)
                self._release(key)  # its final status is already stored
            return
        subscribers = self._webhooks.subscribers(key[0], event_type)
        state.records = plan.plan(state.uid, [(h.name, h.uid) for h in subscribers])
        state.planned = True
        for record in state.records.values():
            self._schedule(key, record.webhook, None)
        if not state.records:
            self._finish(state)
        # The planned state alone need not be written at once: delivery ids are derived from the
        # uids, so a restart before the first outcome plans the same deliveries again.
        self._mark(state, defer=0.0 if state.finished else self._planned_status_delay)

    # -- scheduling ---------------------------------------------------------------------------

    def _schedule(self, key: EventKey, webhook: str | None, when: datetime | None) -> None:
        delay = 0.0 if when is None else (when - datetime.now(timezone.utc)).total_seconds()
        heapq.heappush(self._heap, _Due(time.monotonic() + max(0.0, delay), next(self._seq), key, webhook))
        self._wake.set()

    def pending_retries(self) -> int:
        return sum(
            1
            for state in self._events.values()
            for record in state.records.values()
            if record.state == plan.RETRYING
        )

    def start(self) -> None:
        self._task = spawn(self._run(), name="delivery-scheduler")

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Dispatch nothing new; give attempts in flight ``grace`` seconds to finish and be recorded.

        An attempt still running after that is cut off: the next leader sends it again, with the
        same delivery id.
        """
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0].when <= now:
                # A slot first, then a task: a burst of 10,000 due deliveries waits as small heap
                # entries, not as 10,000 suspended coroutines.
                await self._limit.acquire()
                due = heapq.heappop(self._heap)
                task = asyncio.create_task(self._dispatch(due))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            self._wake.clear()
            timeout = self._heap[0].when - now if self._heap else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._limit.release()

    async def _dispatch(self, due: _Due) -> None:
        try:
            if due.webhook is None:
                await self._expire(due.event)
            else:
                await self._attempt(due.event, due.webhook)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one broken delivery must not stop the others
            log.exception("delivery of %s/%s to %s crashed; retrying in 30s", *due.event, due.webhook)
            state = self._events.get(due.event)
            if state and due.webhook in state.records and not state.records[due.webhook].final:
                self._schedule(due.event, due.webhook, datetime.now(timezone.utc) + timedelta(seconds=30))

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(self, key: EventKey, name: str) -> None:
        state = self._events.get(key)
        if state is None or name not in state.records or state.records[name].final:
            return  # the event was deleted, or this delivery already finished
        record = state.records[name]
        hook = self._webhooks.get(key[0], name)
        if hook is None or (record.webhook_uid and hook.uid != record.webhook_uid):
            exists = self._webhooks.exists(key[0], name)
            reason = "Webhook spec is invalid" if exists else "Webhook was deleted before the delivery completed"
            self._conclude(state, plan.refused(record, reason), hook=None)
            return
        if hook.spec.suspend:
            self._schedule(key, name, datetime.now(timezone.utc) + timedelta(seconds=SUSPENDED_RECHECK))
            return
        webhook_state = self._webhooks.states.get((hook.namespace, hook.name))
        problem = webhook_state.problem if webhook_state else None
        if problem and problem.reason == DESTINATION_NOT_ALLOWED:
            self._conclude(state, plan.refused(record, f"refused, not attempted: {problem.message}"), hook)
            return
        secret = await self._webhooks.secret_value(hook)
        if isinstance(secret, Problem):  # counts as a failed attempt: the Secret may still appear
            await self._record_attempt(state, record, hook, ok=False, http_status=None, error=secret.message, duration=0.0)
            return
        try:
            destination = await self._webhooks.destination(hook.spec.url)
        except DestinationRefused as exc:
            self._conclude(state, plan.refused(record, f"refused, not attempted: {exc.reason}: {exc}"), hook)
            return
        headers = signing.delivery_headers(
            body=state.body,
            event_type=state.event_type,
            delivery_id=record.delivery_id,
            secret=secret,
            user_agent=USER_AGENT,
        )
        outcome = await self._sender.send(destination, state.body, headers, hook.spec.delivery.timeout.total_seconds())
        metrics.ATTEMPTS.labels("success" if outcome.ok else "failure").inc()
        metrics.ATTEMPT_SECONDS.observe(outcome.duration)
        await self._record_attempt(
            state, record, hook, ok=outcome.ok, http_status=outcome.http_status, error=outcome.error, duration=outcome.duration
        )

    async def _record_attempt(
        self, state: EventState, record: Record, hook: Webhook, *, ok: bool, http_status: int | None,
        error: str | None, duration: float,
    ) -> None:
        if self._events.get((state.namespace, state.name)) is not state:
            return  # deleted while in flight
        now = datetime.now(timezone.utc)
        policy = hook.spec.delivery.policy()
        next_at = None
        if not ok:
            jitter = retry.jitter_for(record.delivery_id, record.attempts + 1)
            next_at = retry.next_attempt_at(policy, record.attempts + 1, now, jitter=jitter)
        updated = plan.attempted(record, when=now, ok=ok, http_status=http_status, error=error, next_attempt=next_at)
        last_delivery: dict[str, Any] = {
            "event": state.name,
            "eventType": state.event_type,
            "deliveryId": record.delivery_id,
            "attempt": updated.attempts,
            "time": timestamp(now),
            "durationMilliseconds": int(duration * 1000),
        }
        if http_status is not None:
            last_delivery["httpStatus"] = http_status
        if error:
            last_delivery["error"] = error
        wstate = self._webhooks.states.get((hook.namespace, hook.name))
        if wstate is not None:
            if ok:
                if wstate.record_success(last_delivery, now):
                    await self._event(hook, "Normal", "Recovered", f"delivery of {state.name} succeeded; Webhook is Active again")
            else:
                wstate.record_failure(last_delivery, now)
            self._writer.mark((WEBHOOKS, hook.namespace, hook.name), wstate.compose)
        if updated.state == plan.RETRYING and next_at is not None:
            self._schedule((state.namespace, state.name), record.webhook, next_at)
        self._conclude(state, updated, hook)

    def _conclude(self, state: EventState, record: Record, hook: Webhook | None) -> None:
        """Store the record; on a final failure turn the Webhook Failing and alert once."""
        state.records[record.webhook] = record
        if record.final:
            metrics.DELIVERIES.labels("succeeded" if record.state == plan.SUCCEEDED else "failed").inc()
        if record.state == plan.FAILED and record.attempts and hook is not None:  # exhausted, not refused
            task = asyncio.create_task(self._failing(state, record, hook))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if state.finished:
            self._finish(state)
        self._mark(state)

    async def _failing(self, state: EventState, record: Record, hook: Webhook) -> None:
        wstate = self._webhooks.states.get((hook.namespace, hook.name))
        if wstate is None:
            return
        message = f"delivery of {state.name} ({state.event_type}) failed after {record.attempts} attempt(s): {record.error}"
        transition = wstate.mark_failing(message)
        self._writer.mark((WEBHOOKS, hook.namespace, hook.name), wstate.compose)
        if not transition:
            return
        log.warning("Webhook %s/%s is Failing: %s", hook.namespace, hook.name, message)
        await self._event(hook, "Warning", "Failing", message)
        await self._notifier.notify(
            FailingAlert(
                namespace=hook.namespace,
                webhook=hook.name,
                url=hook.spec.url,
                event=state.name,
                event_type=state.event_type,
                attempts=record.attempts,
                last_error=record.error or "",
                recipients=recipients(self._operator_recipients, hook.spec.alerts.email),
            )
        )

    async def _event(self, hook: Webhook, type_: str, reason: str, message: str) -> None:
        try:
            await self._kube.record_event(hook.reference(), type_, reason, message)
        except Exception as exc:  # noqa: BLE001 - an Event is informative, never load-bearing
            log.warning("could not record %s Event on Webhook %s/%s: %s", reason, hook.namespace, hook.name, exc)

    # -- status and retention -----------------------------------------------------------------

    def _mark(self, state: EventState, defer: float = 0.0) -> None:
        key = (state.namespace, state.name)

        def compose() -> dict[str, Any] | None:
            if self._events.get(key) is not state and self._finished.get(key) != state.uid:
                return None  # deleted meanwhile
            status = state.compose(self._conditions.get(key))
            if state.finished:
                self._release(key)  # this closure keeps the state until the write succeeds
            else:
                self._conditions[key] = status["conditions"]
            return status

        self._writer.mark((PLURAL, *key), compose, defer=defer)

    def _finish(self, state: EventState) -> None:
        key = (state.namespace, state.name)
        if state.finished_time is None:
            state.finished_time = timestamp()
        ttl = self._ttl.get(key)
        keep = timedelta(seconds=ttl) if ttl is not None else self._retention
        self._finished[key] = state.uid
        self._schedule(key, None, plan.parse_time(state.finished_time) + keep)  # type: ignore[operator]

    async def _expire(self, key: EventKey) -> None:
        uid = self._finished.get(key)
        if uid is None:
            return
        await self._writer.settle((PLURAL, *key))  # the final status lands before the object goes
        try:
            await self._kube.delete(PLURAL, key[0], key[1], uid=uid)
        except (NotFound, Conflict):
            pass  # already gone, or replaced by a new object of the same name
        except KubeError as exc:
            log.warning("deleting IntegrationEvent %s/%s failed (%s); retrying in 30s", *key, exc)
            self._schedule(key, None, datetime.now(timezone.utc) + timedelta(seconds=30))
            return
        self._drop(key)
        log.info("IntegrationEvent %s/%s deleted after its retention period", *key)

