"""Kubernetes-style status conditions: one helper sets them, keyed by type.

``lastTransitionTime`` moves only when ``status`` flips, as the API conventions require, so
``kubectl describe`` tells how long a Webhook has been failing rather than when we last looked.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

Condition = dict[str, Any]
Status = Literal["True", "False", "Unknown"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 in UTC with a ``Z``, the format Kubernetes uses for ``date-time`` fields."""
    when = (when or utcnow()).astimezone(timezone.utc)
    text = when.isoformat(timespec="milliseconds" if when.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime | None = None,
) -> list[Condition]:
    """Return a new list with ``type_`` set; other conditions are kept as they are."""
    existing = {c.get("type"): c for c in conditions or []}
    old = existing.get(type_)
    transition = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else timestamp(now)
    new: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    existing[type_] = new
    order = {"Ready": 0}
    return sorted(existing.values(), key=lambda c: (order.get(c["type"], 1), c["type"]))


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return bool(cond and cond.get("status") == "True")
