"""Operator settings: environment variables parsed and validated once, at start.

Every field is documented with its unit and default; a bad value stops the operator with a
message naming the variable, never a stack trace half-way through a delivery.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .retry import parse_duration

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "inori-system"


def _default_namespace() -> str:
    """In a Pod the operator's namespace is the service account's; elsewhere a fixed default."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything the operator reads from its environment (prefix ``INORI_``)."""

    model_config = SettingsConfigDict(env_prefix="INORI_", extra="ignore", frozen=True)

    namespace: str = Field(
        default_factory=_default_namespace,
        validation_alias=AliasChoices("INORI_NAMESPACE", "POD_NAMESPACE"),
        description="The operator's own namespace, where API-key hashes are stored.",
    )
    watch_namespaces: CommaList = Field(
        default_factory=list, description="Namespaces to watch, comma-separated; empty means all."
    )

    http_host: str = Field("0.0.0.0", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API (verify, events, health, metrics).")
    max_event_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest accepted POST /v1/events body, in bytes (413 beyond)."
    )

    smtp_host: str = Field("", description="SMTP server for alerts; empty disables email alerts.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str = Field("", description="SMTP login user; empty means no login.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP login password.")
    smtp_from: str = Field("inori-operator@localhost", description="Sender address of alert mails.")
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="SMTP connect and command timeout.")
    alert_recipients: CommaList = Field(
        default_factory=list, description="Operator-wide alert recipients, comma-separated."
    )

    allow_plain_http: bool = Field(False, description="Allow http:// webhook URLs (development only).")
    allowed_cidrs: CommaList = Field(
        default_factory=list,
        description="CIDRs exempt from the destination policy's address checks, comma-separated.",
    )
    ca_bundle: Path | None = Field(None, description="Extra PEM CA bundle trusted for webhook receivers.")

    event_retention: timedelta = Field(
        timedelta(hours=24), description="How long finished IntegrationEvents are kept (ISO 8601 or seconds)."
    )
    max_concurrent_deliveries: int = Field(256, ge=1, description="Deliveries in flight at once.")
    max_concurrent_per_host: int = Field(32, ge=1, description="Deliveries in flight at once to one receiver host.")
    max_response_bytes: int = Field(64 * 1024, ge=0, description="Bytes of a receiver's answer read before closing.")
    status_flush_interval: float = Field(
        0.05, gt=0, le=5, description="Seconds between batched status writes (coalesces bursts)."
    )
    event_status_delay: float = Field(
        5.0, ge=0, le=60,
        description="Seconds a new IntegrationEvent's planned (Pending) status may wait for its first delivery "
        "outcome, so that both go out in one write; outcomes themselves are written at once.",
    )
    webhook_status_spacing: float = Field(
        1.0, ge=0, le=60, description="Least seconds between two status writes of one Webhook under load."
    )
    last_used_interval: float = Field(60.0, gt=0, description="Seconds between lastUsedAt writes per ApiKey.")

    peering_name: str = Field("inori-operator", description="kopf peering object: replicas sharing it elect one active.")
    standalone: bool = Field(False, description="Skip peering (a single replica, or tests).")
    peering_lifetime: int = Field(
        30, ge=15, le=600, description="Seconds before a silent peer is presumed dead and a standby takes over."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="json: one object per line; text: for people; auto: text on a terminal."
    )

    @field_validator("watch_namespaces", "alert_recipients", "allowed_cidrs", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @field_validator("allowed_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR such as 10.0.0.0/8 or 127.0.0.1/32") from None
        return value

    @field_validator("event_retention", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().upper().startswith("P"):
            return parse_duration(value.strip())
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"CA bundle {value} does not exist or is not a file")
        return value

    @field_validator("alert_recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address or address.startswith("@") or address.endswith("@"):
                raise ValueError(f"{address!r} is not an email address")
        return value


def describe_error(exc: Exception) -> str:
    """One line per bad variable, naming it the way the user set it."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for err in errors():
        field = ".".join(str(part) for part in err.get("loc", ()))
        lines.append(f"INORI_{field.upper()}: {err.get('msg')}")
    return "invalid settings:\n  " + "\n  ".join(lines)
