"""A Webhook's own reconciliation: its Secret, its URL, its phase and Ready condition."""

from __future__ import annotations

from support.kube import Kube, eventually
from support.operator import OperatorProcess


def _ready(kube: Kube, ns: str, name: str) -> dict:
    status = kube.status("webhooks", ns, name)
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


def test_a_webhook_whose_secret_is_missing_is_invalid_until_the_secret_appears(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    kube.webhook(ns, "w", "https://127.0.0.1:9/hook", ["record.created"], secretRef={"name": "w-signing"})
    eventually(lambda: kube.status("webhooks", ns, "w").get("phase") == "Invalid", message="phase Invalid")
    ready = _ready(kube, ns, "w")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    assert "w-signing" in ready["message"]
    assert kube.status("webhooks", ns, "w")["observedGeneration"] == 1

    kube.secret(ns, "w-signing", {"secret": "s3cr3t"})
    eventually(lambda: kube.status("webhooks", ns, "w").get("phase") == "Active", message="phase Active")
    assert _ready(kube, ns, "w")["status"] == "True"


def test_a_secret_without_the_referenced_key_is_named_in_the_reason(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    kube.secret(ns, "s", {"other": "x"})
    kube.webhook(ns, "w", "https://127.0.0.1:9/hook", ["record.created"], secretRef={"name": "s", "key": "hmac"})
    eventually(lambda: _ready(kube, ns, "w").get("reason") == "SecretKeyNotFound")
    assert "'hmac'" in _ready(kube, ns, "w")["message"]


def test_a_loopback_url_is_refused_by_the_default_destination_policy(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    # The test operator allow-lists only 127.0.0.1/32; the rest of 127.0.0.0/8 is as refused as anywhere.
    kube.webhook(ns, "w", "https://127.0.0.2/hook", ["record.created"])
    eventually(lambda: _ready(kube, ns, "w").get("reason") == "DestinationNotAllowed")
    assert kube.status("webhooks", ns, "w")["phase"] == "Invalid"
    assert "loopback" in _ready(kube, ns, "w")["message"]


def test_suspending_a_webhook_sets_phase_suspended_and_a_new_generation(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    kube.webhook(ns, "w", "https://127.0.0.1:9/hook", ["record.created"])
    eventually(lambda: kube.status("webhooks", ns, "w").get("phase") == "Active")
    kube.patch("webhooks", ns, "w", {"spec": {"suspend": True}})
    eventually(lambda: kube.status("webhooks", ns, "w").get("phase") == "Suspended")
    assert kube.status("webhooks", ns, "w")["observedGeneration"] == 2
