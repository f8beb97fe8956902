"""Email alerts when a Webhook turns Failing.

An alert channel is one small interface (``Notifier.notify``), the Flux habit, so Slack or
PagerDuty can join email later. Sending never blocks deliveries: mails go out from background
tasks with a few retries, and an SMTP outage is logged and counted, not raised.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from . import metrics

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 4
FIRST_RETRY_DELAY = 1.0


@dataclass(frozen=True)
class FailingAlert:
    """Everything an alert says: identifiers and the error, never the signing secret."""

    namespace: str
    webhook: str
    url: str
    event: str
    event_type: str
    attempts: int
    last_error: str
    recipients: tuple[str, ...]


class Notifier(Protocol):
    async def notify(self, alert: FailingAlert) -> None: ...


def recipients(operator_wide: list[str] | tuple[str, ...], per_webhook: tuple[str, ...]) -> tuple[str, ...]:
    """Operator-wide first, then the Webhook's own, without duplicates (case-insensitive)."""
    seen: dict[str, str] = {}
    for address in (*operator_wide, *per_webhook):
        seen.setdefault(address.strip().lower(), address.strip())
    return tuple(seen.values())


def compose(alert: FailingAlert, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[Inori] Webhook {alert.namespace}/{alert.webhook} is failing"
    msg["From"] = sender
    msg["To"] = ", ".join(alert.recipients)
    msg.set_content(
        "\n".join(
            [
                f"The Webhook {alert.webhook} in namespace {alert.namespace} is now Failing.",
                "",
                f"URL:        {alert.url}",
                f"Event:      {alert.event} ({alert.event_type})",
                f"Attempts:   {alert.attempts}",
                f"Last error: {alert.last_error}",
                "",
                "Later events are still delivered; the first success returns the Webhook to Active.",
                f"Inspect it with: kubectl describe webhook {alert.webhook} -n {alert.namespace}",
            ]
        )
    )
    return msg


class EmailNotifier:
    """SMTP with optional STARTTLS and login; the blocking smtplib runs in a thread."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        starttls: bool,
        username: str,
        password: str,
        sender: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host, self._port, self._starttls = host, port, starttls
        self._username, self._password = username, password
        self._sender, self._timeout = sender, timeout
        self._ssl = ssl_context or ssl.create_default_context()
        self._tasks: set[asyncio.Task[None]] = set()

    async def notify(self, alert: FailingAlert) -> None:
        """Queue the mail and return at once."""
        if not alert.recipients:
            log.warning("Webhook %s/%s is failing but no alert recipient is configured", alert.namespace, alert.webhook)
            metrics.ALERTS.labels("no_recipients").inc()
            return
        task = asyncio.create_task(self._send_with_retries(compose(alert, self._sender), alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send_with_retries(self, msg: EmailMessage, alert: FailingAlert) -> None:
        delay = FIRST_RETRY_DELAY
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(self._send, msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("alert mail for %s/%s failed (attempt %d/%d): %s",
                            alert.namespace, alert.webhook, attempt, SEND_ATTEMPTS, exc)
                if attempt == SEND_ATTEMPTS:
                    metrics.ALERTS.labels("failed").inc()
                    return
                await asyncio.sleep(delay)
                delay *= 2
            else:
                metrics.ALERTS.labels("sent").inc()
                log.info("alert mail sent for Webhook %s/%s", alert.namespace, alert.webhook)
                return

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=self._ssl)
            if self._username:
                smtp.login(self._username, self._password)
            smtp.send_message(msg)


class LogNotifier:
    """Used when no SMTP server is configured: the transition is still logged and counted."""

    async def notify(self, alert: FailingAlert) -> None:
        metrics.ALERTS.labels("disabled").inc()
        log.warning("Webhook %s/%s is failing (%s); email alerts are off (INORI_SMTP_HOST unset)",
                    alert.namespace, alert.webhook, alert.last_error)

    async def drain(self) -> None:
        return None
