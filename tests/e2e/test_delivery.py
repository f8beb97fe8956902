"""The delivery engine end to end: real control plane, real HTTPS receivers, real SMTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
from typing import Any

import pytest

from conftest import Mailbox, closed_port
from support.kube import Kube, eventually
from support.operator import OperatorProcess
from support.receiver import Answer, Receiver

FAST = {"retry": 5, "backoffDelay": "PT1S", "timeout": "PT2S"}


def finished(kube: Kube, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    return eventually(
        lambda: (s := kube.status("integrationevents", ns, name)).get("phase") in ("Delivered", "Failed") and s,
        timeout=timeout,
        message=f"event {name} finished",
    )


def record(status: dict[str, Any], webhook: str) -> dict[str, Any]:
    return next(d for d in status["deliveries"] if d["webhook"] == webhook)


def test_a_receiver_gets_the_contract_body_and_headers_with_a_valid_signature(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    kube.secret(ns, "signing", {"secret": "whsec-test-1"})
    kube.webhook(ns, "bi", receiver.url, ["record.status_changed"], secretRef={"name": "signing"})
    eventually(lambda: kube.status("webhooks", ns, "bi").get("phase") == "Active")
    event = kube.event(ns, "record.status_changed", {"recordId": "r-123", "from": "compliant", "to": "expired"},
                       timestamp="2026-12-04T10:00:00Z")
    name, uid = event["metadata"]["name"], event["metadata"]["uid"]
    status = finished(kube, ns, name)

    assert status["phase"] == "Delivered" and status["succeeded"] == 1 and status["total"] == 1
    [got] = receiver.requests
    assert json.loads(got.body) == {
        "id": uid,
        "event": "record.status_changed",
        "timestamp": "2026-12-04T10:00:00Z",
        "data": {"recordId": "r-123", "from": "compliant", "to": "expired"},
    }
    expected = hmac.new(b"whsec-test-1", got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Inori-Signature"] == expected
    assert got.headers["X-Inori-Event"] == "record.status_changed"
    assert got.headers["X-Inori-Delivery"] == record(status, "bi")["deliveryId"]
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("inori-operator/")

    webhook = eventually(lambda: (s := kube.status("webhooks", ns, "bi")).get("lastSuccessTime") and s)
    assert webhook["lastDelivery"]["event"] == name and webhook["lastDelivery"]["httpStatus"] == 200
    assert webhook["lastDelivery"]["eventType"] == "record.status_changed"
    assert webhook["consecutiveFailures"] == 0


def test_an_unsigned_webhook_gets_no_signature_header(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    kube.webhook(ns, "plain", receiver.url, ["vendor.created"])
    name = kube.event(ns, "vendor.created", {"vendorId": "v-1"})["metadata"]["name"]
    finished(kube, ns, name)
    [got] = receiver.requests
    assert "X-Inori-Signature" not in got.headers
    assert got.headers["X-Inori-Event"] == "vendor.created"


def test_fan_out_reaches_only_subscribed_active_webhooks_of_the_same_namespace(
    operator: OperatorProcess, kube: Kube, ca: Any, receivers: list[Receiver]
) -> None:
    ns, other = kube.namespace(), kube.namespace()
    subscribed, wrong_type, suspended, elsewhere = (Receiver(ca) for _ in range(4))
    receivers.extend([subscribed, wrong_type, suspended, elsewhere])
    kube.webhook(ns, "subscribed", subscribed.url, ["record.created", "vendor.created"])
    kube.webhook(ns, "wrong-type", wrong_type.url, ["vendor.created"])
    kube.webhook(ns, "suspended", suspended.url, ["record.created"], suspend=True)
    kube.webhook(other, "elsewhere", elsewhere.url, ["record.created"])
    eventually(lambda: kube.status("webhooks", ns, "suspended").get("phase") == "Suspended")

    name = kube.event(ns, "record.created", {"recordId": "r-9"})["metadata"]["name"]
    status = finished(kube, ns, name)
    time.sleep(1)
    assert [d["webhook"] for d in status["deliveries"]] == ["subscribed"]
    assert (subscribed.count(), wrong_type.count(), suspended.count(), elsewhere.count()) == (1, 0, 0, 0)


def test_a_receiver_that_fails_twice_then_succeeds_sees_three_attempts_with_growing_gaps(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    receiver.answer(Answer(500), Answer(503))
    kube.webhook(ns, "flaky", receiver.url, ["certificate.uploaded"], delivery=FAST)
    name = kube.event(ns, "certificate.uploaded", {"certificateId": "c-1"})["metadata"]["name"]
    status = finished(kube, ns, name)

    first, second, third = receiver.requests
    assert first.body == second.body == third.body
    assert first.headers["X-Inori-Delivery"] == second.headers["X-Inori-Delivery"] == third.headers["X-Inori-Delivery"]
    gap1, gap2 = second.at - first.at, third.at - second.at
    assert gap1 >= 1.0 and gap2 > gap1, (gap1, gap2)
    assert gap2 >= 2.0
    rec = record(status, "flaky")
    assert rec["state"] == "Succeeded" and rec["attempts"] == 3 and rec["httpStatus"] == 200
    assert status["phase"] == "Delivered"
    assert kube.status("webhooks", ns, "flaky")["phase"] == "Active"


def test_a_scheduled_retry_is_recorded_in_status_before_it_happens(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    receiver.answer(Answer(500))
    kube.webhook(ns, "later", receiver.url, ["record.created"], delivery={"retry": 1, "backoffDelay": "PT3S"})
    name = kube.event(ns, "record.created")["metadata"]["name"]
    status = eventually(lambda: (s := kube.status("integrationevents", ns, name)).get("phase") == "Delivering" and s)
    rec = record(status, "later")
    assert rec["state"] == "Retrying" and rec["attempts"] == 1 and rec["httpStatus"] == 500
    assert rec["nextAttemptTime"] > rec["lastAttemptTime"]
    finished(kube, ns, name)


@pytest.mark.parametrize(
    ("mode", "answers"),
    [
        ("http-500", [Answer(500)] * 3),
        ("redirect", [Answer(302, headers=(("Location", "https://127.0.0.1:1/elsewhere"),))] * 3),
        ("timeout", [Answer(200, stall=3)] * 3),
        ("refused", None),
    ],
)
def test_a_receiver_that_always_fails_exhausts_its_retries_and_the_webhook_turns_failing_with_one_mail(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver, mailbox: Mailbox, mode: str, answers: list[Answer] | None
) -> None:
    url = receiver.url if answers else f"https://127.0.0.1:{closed_port()}/hook"
    if answers:
        receiver.answer(*answers)
    hook = f"down-{mode}"
    kube.webhook(ns, hook, url, ["escalation.triggered"], delivery={"retry": 2, "backoffDelay": "PT0.5S", "timeout": "PT1S"},
                 alerts={"email": ["team@example.com"]})
    name = kube.event(ns, "escalation.triggered", {"escalationId": "e-1"})["metadata"]["name"]
    status = finished(kube, ns, name)

    rec = record(status, hook)
    assert status["phase"] == "Failed"
    assert rec["state"] == "Failed" and rec["attempts"] == 3
    if answers:
        assert receiver.count() == 3
    webhook = eventually(lambda: (s := kube.status("webhooks", ns, hook)).get("phase") == "Failing" and s)
    failing = next(c for c in webhook["conditions"] if c["type"] == "Failing")
    assert failing["status"] == "True" and name in failing["message"]
    assert webhook["consecutiveFailures"] == 3
    eventually(lambda: any(e.type == "Warning" and e.reason == "Failing" for e in kube.events_for(ns, hook)))

    mails = eventually(lambda: mailbox.about(f"{ns}/{hook}"), message="alert mail")
    text = mails[0].get_payload()
    assert hook in text and ns in text and url in text and name in text and "Attempts:   3" in text
    # Another failure while already Failing sends no second mail.
    second = kube.event(ns, "escalation.triggered")["metadata"]["name"]
    finished(kube, ns, second)
    time.sleep(1)
    assert len(mailbox.about(f"{ns}/{hook}")) == 1
    _, rcpts = next(e for e, m in zip(mailbox.envelopes, mailbox.messages) if f"{ns}/{hook}" in str(m["Subject"]))
    assert set(rcpts) == {"oncall@example.com", "team@example.com"}


def test_a_failing_webhook_returns_to_active_on_the_first_success(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver, mailbox: Mailbox
) -> None:
    receiver.answer(Answer(500), Answer(500))
    kube.webhook(ns, "recovers", receiver.url, ["record.created"], delivery={"retry": 1, "backoffDelay": "PT0.2S"})
    finished(kube, ns, kube.event(ns, "record.created")["metadata"]["name"])
    eventually(lambda: kube.status("webhooks", ns, "recovers").get("phase") == "Failing")
    finished(kube, ns, kube.event(ns, "record.created")["metadata"]["name"])
    status = eventually(lambda: (s := kube.status("webhooks", ns, "recovers")).get("phase") == "Active" and s)
    assert status["consecutiveFailures"] == 0
    eventually(lambda: any(e.type == "Normal" and e.reason == "Recovered" for e in kube.events_for(ns, "recovers")))
    assert len(mailbox.about(f"{ns}/recovers")) == 1


def test_a_scheduled_retry_survives_an_operator_crash_and_nothing_delivered_is_sent_again(
    operator: OperatorProcess, kube: Kube, ns: str, ca: Any, receivers: list[Receiver]
) -> None:
    flaky, healthy = Receiver(ca), Receiver(ca)
    receivers.extend([flaky, healthy])
    flaky.answer(Answer(500))
    kube.webhook(ns, "flaky", flaky.url, ["record.created"], delivery={"retry": 3, "backoffDelay": "PT4S"})
    kube.webhook(ns, "healthy", healthy.url, ["record.created"])
    name = kube.event(ns, "record.created", {"n": 1})["metadata"]["name"]
    eventually(lambda: record(kube.status("integrationevents", ns, name), "flaky")["state"] == "Retrying"
               and record(kube.status("integrationevents", ns, name), "healthy")["state"] == "Succeeded")
    operator.kill()
    assert flaky.count() == 1 and healthy.count() == 1
    operator.start()

    status = finished(kube, ns, name, timeout=30)
    assert record(status, "flaky")["state"] == "Succeeded" and record(status, "flaky")["attempts"] == 2
    time.sleep(1)
    assert flaky.count() == 2
    assert healthy.count() == 1, "an already delivered webhook was sent the event again"
    assert flaky.requests[0].headers["X-Inori-Delivery"] == flaky.requests[1].headers["X-Inori-Delivery"]


def test_a_webhook_deleted_mid_retry_ends_its_delivery_clearly(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    receiver.answer(Answer(500))
    kube.webhook(ns, "gone", receiver.url, ["record.created"], delivery={"retry": 3, "backoffDelay": "PT2S"})
    name = kube.event(ns, "record.created")["metadata"]["name"]
    eventually(lambda: record(kube.status("integrationevents", ns, name), "gone")["state"] == "Retrying")
    kube.delete("webhooks", ns, "gone")
    status = finished(kube, ns, name)
    rec = record(status, "gone")
    assert rec["state"] == "Failed" and "deleted" in rec["error"]
    assert receiver.count() == 1


def test_a_missing_secret_key_fails_attempts_with_a_clear_error(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    kube.secret(ns, "s", {"wrong": "x"})
    kube.webhook(ns, "nokey", receiver.url, ["record.created"], secretRef={"name": "s"}, delivery={"retry": 0})
    name = kube.event(ns, "record.created")["metadata"]["name"]
    status = finished(kube, ns, name)
    rec = record(status, "nokey")
    assert rec["state"] == "Failed" and "has no key 'secret'" in rec["error"]
    assert receiver.count() == 0


def test_a_one_megabyte_event_is_delivered_intact(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    kube.secret(ns, "s", {"secret": "k"})
    kube.webhook(ns, "big", receiver.url, ["certificate.analyzed"], secretRef={"name": "s"})
    data = {"blob": "x" * (1024 * 1024 - 64), "n": 1}
    name = kube.event(ns, "certificate.analyzed", data)["metadata"]["name"]
    assert finished(kube, ns, name)["phase"] == "Delivered"
    [got] = receiver.requests
    assert json.loads(got.body)["data"] == data
    assert got.headers["X-Inori-Signature"] == hmac.new(b"k", got.body, hashlib.sha256).hexdigest()


def test_a_receiver_answering_with_100_mib_costs_the_operator_only_the_first_bytes(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    receiver.answer(Answer(200, huge_body=100 * 1024 * 1024))
    kube.webhook(ns, "chatty", receiver.url, ["record.created"])
    started = time.monotonic()
    status = finished(kube, ns, kube.event(ns, "record.created")["metadata"]["name"])
    assert status["phase"] == "Delivered"
    assert time.monotonic() - started < 10


def test_a_finished_event_is_deleted_after_its_ttl(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    kube.webhook(ns, "w", receiver.url, ["record.created"])
    name = kube.event(ns, "record.created", ttlSecondsAfterFinished=1)["metadata"]["name"]
    finished(kube, ns, name)
    eventually(lambda: not kube.exists("integrationevents", ns, name), timeout=15)


def test_an_event_nobody_subscribes_to_is_delivered_to_no_one(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    status = finished(kube, ns, kube.event(ns, "vendor.created")["metadata"]["name"])
    assert status["phase"] == "Delivered" and status["total"] == 0
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NoSubscribers"


def test_metrics_count_deliveries_attempts_and_webhooks_by_phase(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    kube.webhook(ns, "m", receiver.url, ["record.created"])
    finished(kube, ns, kube.event(ns, "record.created")["metadata"]["name"])
    with urllib.request.urlopen(operator.base_url + "/metrics") as resp:
        text = resp.read().decode()
    for metric in ('inori_deliveries_total{outcome="succeeded"}', 'inori_delivery_attempts_total{outcome="success"}',
                   "inori_delivery_attempt_duration_seconds_bucket", 'inori_webhooks{phase="Active"}', "inori_pending_retries"):
        assert metric in text, metric



def test_an_event_delivered_at_once_gets_one_status_write(operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver) -> None:
    """Its planned state is never written on its own: one write carries the outcome."""
    import kubernetes

    kube.webhook(ns, "once", receiver.url, ["vendor.created"])
    eventually(lambda: kube.status("webhooks", ns, "once").get("phase") == "Active")
    created = kube.event(ns, "vendor.created", {"vendorId": "v-1"})
    name = created["metadata"]["name"]
    seen = []
    stream = kubernetes.watch.Watch().stream(
        kube.custom.list_namespaced_custom_object, "integrations.inori.io", "v1alpha1", ns, "integrationevents",
        field_selector=f"metadata.name={name}", resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=6,
    )
    for change in stream:  # until the server ends the watch: later writes would show up too
        seen.append((change["type"], (change["object"].get("status") or {}).get("phase")))
    assert seen == [("MODIFIED", "Delivered")], seen


def test_a_graceful_stop_finishes_the_attempt_in_flight_and_records_it(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    receiver.answer(Answer(stall=1.5))  # still in flight when the stop comes
    kube.webhook(ns, "slow", receiver.url, ["record.created"])
    eventually(lambda: kube.status("webhooks", ns, "slow").get("phase") == "Active")
    name = kube.event(ns, "record.created")["metadata"]["name"]
    eventually(lambda: receiver.count() == 1, message="the attempt started")
    stopping = time.monotonic()
    operator.stop()  # SIGTERM, as the kubelet does
    assert time.monotonic() - stopping < 10
    assert record(kube.status("integrationevents", ns, name), "slow")["state"] == "Succeeded"
    operator.start()
    time.sleep(2)
    assert receiver.count() == 1, "the next operator sent a recorded delivery again"
