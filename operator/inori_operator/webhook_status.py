"""A Webhook's status, composed from two sources that never overwrite each other.

The reconciler owns *configuration* (is the Secret there, is the URL allowed, is it suspended);
the delivery engine owns *health* (failures, last delivery, Failing). Both feed one
``WebhookState`` and the phase is derived from all of it at write time, so neither can clobber
the other's findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .conditions import Condition, set_condition, timestamp

ACTIVE, FAILING, SUSPENDED, INVALID = "Active", "Failing", "Suspended", "Invalid"

# Reasons (CamelCase, stable: alerting rules and Argo CD health scripts match on them).
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
SECRET_EMPTY = "SecretEmpty"
DESTINATION_NOT_ALLOWED = "DestinationNotAllowed"
INVALID_SPEC = "InvalidSpec"
DELIVERIES_FAILING = "DeliveriesFailing"
DELIVERIES_SUCCEEDING = "DeliveriesSucceeding"
RECONCILED = "Reconciled"


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass
class WebhookState:
    generation: int = 0
    configured_generation: int | None = None
    problem: Problem | None = None
    suspended: bool = False
    failing: bool = False
    failing_message: str = ""
    consecutive_failures: int = 0
    last_delivery: dict[str, Any] | None = None
    last_success_time: str | None = None
    last_failure_time: str | None = None
    conditions: list[Condition] = field(default_factory=list)

    @classmethod
    def from_status(cls, generation: int, status: dict[str, Any] | None) -> WebhookState:
        """Resume health from what a previous operator process wrote."""
        status = status or {}
        failing = next((c for c in status.get("conditions") or [] if c.get("type") == "Failing"), None)
        return cls(
            generation=generation,
            failing=bool(failing and failing.get("status") == "True"),
            failing_message=(failing or {}).get("message", ""),
            consecutive_failures=int(status.get("consecutiveFailures") or 0),
            last_delivery=status.get("lastDelivery"),
            last_success_time=status.get("lastSuccessTime"),
            last_failure_time=status.get("lastFailureTime"),
            conditions=list(status.get("conditions") or []),
        )

    @property
    def phase(self) -> str:
        if self.problem:
            return INVALID
        if self.suspended:
            return SUSPENDED
        return FAILING if self.failing else ACTIVE

    def record_success(self, delivery: dict[str, Any], when: datetime) -> bool:
        """Note a 2xx; returns True when this ends a Failing period."""
        recovered = self.failing
        self.failing, self.failing_message = False, ""
        self.consecutive_failures = 0
        self.last_delivery = delivery
        self.last_success_time = timestamp(when)
        return recovered

    def record_failure(self, delivery: dict[str, Any], when: datetime) -> None:
        self.consecutive_failures += 1
        self.last_delivery = delivery
        self.last_failure_time = timestamp(when)

    def mark_failing(self, message: str) -> bool:
        """A delivery exhausted its retries; returns True on the transition (alert once)."""
        was = self.failing
        self.failing, self.failing_message = True, message
        return not was

    def compose(self) -> dict[str, Any] | None:
        if self.configured_generation is None:  # never reconciled: nothing trustworthy to say yet
            return None
        gen = self.configured_generation
        conditions = self.conditions
        if self.problem:
            conditions = set_condition(conditions, "Ready", "False", self.problem.reason, self.problem.message, gen)
        elif self.suspended:
            conditions = set_condition(conditions, "Ready", "False", "Suspended", "spec.suspend is true: new deliveries are held", gen)
        elif self.failing:
            conditions = set_condition(conditions, "Ready", "False", DELIVERIES_FAILING, self.failing_message, gen)
        else:
            conditions = set_condition(conditions, "Ready", "True", RECONCILED, "Webhook is configured and accepting deliveries", gen)
        if self.failing:
            conditions = set_condition(conditions, "Failing", "True", DELIVERIES_FAILING, self.failing_message, gen)
        else:
            conditions = set_condition(conditions, "Failing", "False", DELIVERIES_SUCCEEDING, "No delivery has exhausted its retries since the last success", gen)
        self.conditions = conditions
        status: dict[str, Any] = {
            "observedGeneration": gen,
            "phase": self.phase,
            "conditions": conditions,
            "consecutiveFailures": self.consecutive_failures,
        }
        for key, value in (
            ("lastDelivery", self.last_delivery),
            ("lastSuccessTime", self.last_success_time),
            ("lastFailureTime", self.last_failure_time),
        ):
            if value is not None:
                status[key] = value
        return status
