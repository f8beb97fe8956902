"""What to deliver, to whom, and how an IntegrationEvent's status reads: pure functions only.

The body is built once per event from its immutable spec, so it is byte-identical on every retry
and after a restart. Each (event, webhook) pair gets a delivery id derived from both uids: stable
across retries and restarts, unique per pair, so receivers can de-duplicate.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from ..conditions import set_condition, timestamp

PENDING, RETRYING, SUCCEEDED, FAILED = "Pending", "Retrying", "Succeeded", "Failed"
FINAL_STATES = frozenset({SUCCEEDED, FAILED})

EVENT_PENDING, EVENT_DELIVERING, EVENT_DELIVERED, EVENT_FAILED = "Pending", "Delivering", "Delivered", "Failed"

_DELIVERY_NAMESPACE = uuid.UUID("6f1c3bd2-5d0e-4f51-9a3e-2f0f2b9c7a10")


def delivery_id(event_uid: str, webhook_uid: str) -> str:
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{event_uid}/{webhook_uid}"))


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def event_timestamp(spec: dict[str, Any], metadata: dict[str, Any]) -> str:
    """``spec.timestamp`` when given, else the creation time, in UTC with a ``Z``."""
    when = parse_time(spec.get("timestamp")) or parse_time(metadata.get("creationTimestamp"))
    return timestamp(when or datetime.now(timezone.utc))


def build_body(event_uid: str, event_type: str, when: str, data: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed; compact and UTF-8, with the event uid as ``id``."""
    payload = {"id": event_uid, "event": event_type, "timestamp": when, "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Record:
    """The state of one (event, webhook) delivery, as kept in the event's status."""

    webhook: str
    webhook_uid: str
    delivery_id: str
    state: str = PENDING
    attempts: int = 0
    http_status: int | None = None
    error: str | None = None
    last_attempt_time: str | None = None
    next_attempt_time: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "webhook": self.webhook,
            "webhookUid": self.webhook_uid,
            "deliveryId": self.delivery_id,
            "state": self.state,
            "attempts": self.attempts,
        }
        for key, value in (
            ("httpStatus", self.http_status),
            ("error", self.error),
            ("lastAttemptTime", self.last_attempt_time),
            ("nextAttemptTime", self.next_attempt_time),
        ):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_status(cls, raw: dict[str, Any]) -> Record:
        return cls(
            webhook=raw["webhook"],
            webhook_uid=raw.get("webhookUid", ""),
            delivery_id=raw.get("deliveryId", ""),
            state=raw.get("state", PENDING),
            attempts=int(raw.get("attempts") or 0),
            http_status=raw.get("httpStatus"),
            error=raw.get("error"),
            last_attempt_time=raw.get("lastAttemptTime"),
            next_attempt_time=raw.get("nextAttemptTime"),
        )


def plan(event_uid: str, webhooks: list[tuple[str, str]]) -> dict[str, Record]:
    """One Pending record per subscribed webhook (name, uid)."""
    return {name: Record(name, uid, delivery_id(event_uid, uid)) for name, uid in webhooks}


def attempted(record: Record, *, when: datetime, ok: bool, http_status: int | None, error: str | None,
              next_attempt: datetime | None) -> Record:
    """The record after one attempt; ``next_attempt`` None on a failure means retries are exhausted."""
    state = SUCCEEDED if ok else (RETRYING if next_attempt else FAILED)
    return replace(
        record,
        state=state,
        attempts=record.attempts + 1,
        http_status=http_status,
        error=None if ok else error,
        last_attempt_time=timestamp(when),
        next_attempt_time=timestamp(next_attempt) if next_attempt and not ok else None,
    )


def refused(record: Record, reason: str) -> Record:
    """Final without an attempt: the destination policy or the Webhook's removal forbids sending."""
    return replace(record, state=FAILED, error=reason, next_attempt_time=None)


@dataclass
class EventState:
    namespace: str
    name: str
    uid: str
    event_type: str
    body: bytes
    generation: int
    records: dict[str, Record] = field(default_factory=dict)
    finished_time: str | None = None
    planned: bool = False

    @property
    def phase(self) -> str:
        if not self.planned:
            return EVENT_PENDING
        states = [r.state for r in self.records.values()]
        if not all(s in FINAL_STATES for s in states):
            return EVENT_DELIVERING if any(r.attempts for r in self.records.values()) else EVENT_PENDING
        return EVENT_FAILED if FAILED in states else EVENT_DELIVERED

    @property
    def finished(self) -> bool:
        return self.planned and self.phase in (EVENT_DELIVERED, EVENT_FAILED)

    def compose(self, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        phase = self.phase
        records = sorted(self.records.values(), key=lambda r: r.webhook)
        succeeded = sum(r.state == SUCCEEDED for r in records)
        failed = sum(r.state == FAILED for r in records)
        if phase == EVENT_DELIVERED:
            reason = "Delivered" if records else "NoSubscribers"
            message = f"delivered to {succeeded} webhook(s)" if records else "no Webhook in this namespace subscribes to this event type"
            conds = set_condition(conditions, "Ready", "True", reason, message, self.generation)
        elif phase == EVENT_FAILED:
            conds = set_condition(conditions, "Ready", "False", "DeliveryFailed",
                                  f"{failed} of {len(records)} delivery(ies) failed after all retries", self.generation)
        else:
            conds = set_condition(conditions, "Ready", "False", phase,
                                  f"{succeeded} of {len(records)} delivered so far", self.generation)
        status: dict[str, Any] = {
            "observedGeneration": self.generation,
            "phase": phase,
            "conditions": conds,
            "total": len(records),
            "succeeded": succeeded,
            "failed": failed,
            "deliveries": [r.to_status() for r in records],
        }
        if self.finished_time:
            status["finishedTime"] = self.finished_time
        return status
