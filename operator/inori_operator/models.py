"""Typed views of the three kinds' specs, parsed from what the API server hands us.

The CRDs in ``crds/`` are the schema of record (the API server enforces them at admission); these
models only give the operator typed access with the same defaults, and they re-check what a CRD
cannot express (durations as ``timedelta``) so a hand-edited CRD cannot crash a handler.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .retry import RetryPolicy, parse_duration

GROUP = "integrations.inori.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

EVENT_TYPES: tuple[str, ...] = (
    "record.status_changed",
    "record.created",
    "certificate.uploaded",
    "certificate.analyzed",
    "vendor.created",
    "escalation.triggered",
)
EventType = Literal[
    "record.status_changed",
    "record.created",
    "certificate.uploaded",
    "certificate.analyzed",
    "vendor.created",
    "escalation.triggered",
]


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")


class SecretRef(_Spec):
    name: str
    key: str = "secret"


class Delivery(_Spec):
    retry: int = Field(5, ge=0, le=10)
    backoff_policy: Literal["exponential", "linear"] = Field("exponential", alias="backoffPolicy")
    backoff_delay: timedelta = Field(timedelta(minutes=45), alias="backoffDelay")
    timeout: timedelta = Field(timedelta(seconds=10))

    @field_validator("backoff_delay", "timeout", mode="before")
    @classmethod
    def _iso8601(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def policy(self) -> RetryPolicy:
        return RetryPolicy(retry=self.retry, backoff=self.backoff_policy, delay=self.backoff_delay, timeout=self.timeout)


class Alerts(_Spec):
    email: tuple[str, ...] = ()


class WebhookSpec(_Spec):
    url: str
    events: tuple[EventType, ...]
    secret_ref: SecretRef | None = Field(None, alias="secretRef")
    suspend: bool = False
    delivery: Delivery = Delivery()
    alerts: Alerts = Alerts()


class IntegrationEventSpec(_Spec):
    type: EventType
    timestamp: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds_after_finished: int | None = Field(None, ge=0, alias="ttlSecondsAfterFinished")


class ApiKeySpec(_Spec):
    label: str = Field(min_length=1, max_length=100)
    secret_name: str | None = Field(None, alias="secretName")
    expires_at: datetime | None = Field(None, alias="expiresAt")
    revoked: bool = False

    def plaintext_secret_name(self, apikey_name: str) -> str:
        return self.secret_name or f"{apikey_name}-api-key"
