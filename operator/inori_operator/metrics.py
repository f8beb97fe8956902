"""Prometheus metrics, all in one registry so ``/metrics`` shows exactly what this operator owns.

Labels carry outcomes and phases only; never a key, a secret, a URL or a namespace-supplied value
of unbounded cardinality.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "inori_deliveries_total", "Deliveries that reached a final state, by outcome.", ["outcome"], registry=REGISTRY
)
ATTEMPTS = Counter(
    "inori_delivery_attempts_total", "HTTP delivery attempts, by outcome.", ["outcome"], registry=REGISTRY
)
ATTEMPT_SECONDS = Histogram(
    "inori_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt, request sent to answer read.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ALERTS = Counter("inori_alerts_total", "Email alerts, by outcome.", ["outcome"], registry=REGISTRY)
VERIFICATIONS = Counter(
    "inori_api_key_verifications_total", "API key verifications, by outcome.", ["outcome"], registry=REGISTRY
)
VERIFY_SECONDS = Histogram(
    "inori_api_key_verification_duration_seconds",
    "Time to answer one verification, in the handler.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
    registry=REGISTRY,
)
EVENTS_ACCEPTED = Counter(
    "inori_http_events_total", "POST /v1/events answers, by HTTP status.", ["status"], registry=REGISTRY
)
STATUS_WRITES = Counter("inori_status_writes_total", "Status patches sent to the API server.", registry=REGISTRY)


class _Live(Collector):
    """Gauges computed at scrape time from the operator's in-memory state."""

    def __init__(self) -> None:
        self.webhook_phases: Callable[[], dict[str, int]] = dict
        self.pending_retries: Callable[[], int] = lambda: 0
        self.active_keys: Callable[[], int] = lambda: 0

    def collect(self):  # type: ignore[no-untyped-def]
        phases = GaugeMetricFamily("inori_webhooks", "Webhooks by phase.", labels=["phase"])
        for phase in ("Active", "Failing", "Suspended", "Invalid"):
            phases.add_metric([phase], self.webhook_phases().get(phase, 0))
        yield phases
        yield GaugeMetricFamily("inori_pending_retries", "Deliveries waiting for a scheduled retry.", value=self.pending_retries())
        yield GaugeMetricFamily("inori_api_keys_active", "API keys the verifier currently accepts.", value=self.active_keys())

    def describe(self):  # type: ignore[no-untyped-def]
        return []


LIVE = _Live()
REGISTRY.register(LIVE)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
