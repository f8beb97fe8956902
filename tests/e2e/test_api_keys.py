"""API keys end to end: issue once, hash only, verify, revoke, expire, delete, and the HTTP API."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from inori_operator import keys
from inori_operator.localcluster.cluster import LocalCluster
from support.kube import Kube, eventually
from support.operator import OperatorProcess
from support.receiver import Receiver

OPERATOR_NS = "inori-system"
ISSUED: list[str] = []  # every plaintext seen in this module, checked for leaks at the end


def make_key(kube: Kube, ns: str, name: str, **spec: Any) -> str:
    kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": name}, "spec": {"label": name.title(), **spec}})
    eventually(lambda: kube.status("apikeys", ns, name).get("phase") == "Active", message=f"{name} Active")
    secret = kube.read_secret(ns, spec.get("secretName") or f"{name}-api-key")
    plaintext = base64.b64decode(secret.data["api-key"]).decode()
    ISSUED.append(plaintext)
    return plaintext


def verify(operator: OperatorProcess, key: str | None = None, header: str | None = None) -> httpx.Response:
    headers = {"Authorization": header if header is not None else f"Bearer {key}"} if (key or header is not None) else {}
    return httpx.get(operator.base_url + "/v1/verify", headers=headers)


def hash_secrets(kube: Kube, uid: str) -> list[Any]:
    return kube.core.list_namespaced_secret(OPERATOR_NS, label_selector=f"integrations.inori.io/apikey-uid={uid}").items


def test_a_new_api_key_is_issued_once_stored_as_a_hash_and_verifies(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    key = make_key(kube, ns, "zapier")
    assert keys.KEY_PATTERN.match(key)
    status = kube.status("apikeys", ns, "zapier")
    assert status["prefix"] == keys.display_prefix(key) and status["phase"] == "Active"
    assert status["secretName"] == "zapier-api-key"

    answer = verify(operator, key)
    assert answer.status_code == 200
    assert answer.json() == {"valid": True, "apiKey": {"namespace": ns, "name": "zapier", "label": "Zapier"}}
    assert answer.headers["X-Inori-Key-Namespace"] == ns and answer.headers["X-Inori-Key-Name"] == "zapier"
    assert httpx.post(operator.base_url + "/v1/verify", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    uid = kube.get("apikeys", ns, "zapier")["metadata"]["uid"]
    [stored] = hash_secrets(kube, uid)
    values = [base64.b64decode(v).decode() for v in stored.data.values()]
    assert keys.hash_key(key) in values
    assert not any(key in v or key[6:] in v for v in [*values, *stored.metadata.annotations.values()])
    plaintext_secret = kube.read_secret(ns, "zapier-api-key")
    assert plaintext_secret.metadata.owner_references[0].uid == uid
    eventually(lambda: kube.status("apikeys", ns, "zapier").get("lastUsedAt"), message="lastUsedAt")


def test_a_revoked_key_fails_within_one_second_for_good(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    key = make_key(kube, ns, "revoke-me")
    uid = kube.get("apikeys", ns, "revoke-me")["metadata"]["uid"]
    assert verify(operator, key).status_code == 200
    kube.patch("apikeys", ns, "revoke-me", {"spec": {"revoked": True}})
    patched = time.monotonic()
    eventually(lambda: verify(operator, key).status_code == 401, timeout=1.0, interval=0.02, message="refused within 1s")
    assert time.monotonic() - patched <= 1.0
    status = eventually(lambda: (s := kube.status("apikeys", ns, "revoke-me")).get("phase") == "Revoked" and s)
    assert status["revokedAt"]
    assert hash_secrets(kube, uid) == []
    with pytest.raises(Exception, match="revoked cannot be set back to false"):
        kube.patch("apikeys", ns, "revoke-me", {"spec": {"revoked": False}})


def test_an_expired_key_stops_verifying_and_shows_expired(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    expires = (datetime.now(timezone.utc) + timedelta(seconds=4)).replace(microsecond=0)
    key = make_key(kube, ns, "short-lived", expiresAt=expires.isoformat().replace("+00:00", "Z"))
    assert verify(operator, key).status_code == 200
    eventually(lambda: verify(operator, key).status_code == 401, timeout=8, interval=0.05)
    assert datetime.now(timezone.utc) >= expires
    eventually(lambda: kube.status("apikeys", ns, "short-lived").get("phase") == "Expired", timeout=8)


def test_deleting_an_api_key_removes_its_hash_before_it_goes(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    key = make_key(kube, ns, "delete-me")
    uid = kube.get("apikeys", ns, "delete-me")["metadata"]["uid"]
    assert "integrations.inori.io/api-key-hash" in kube.get("apikeys", ns, "delete-me")["metadata"]["finalizers"]
    kube.delete("apikeys", ns, "delete-me")
    eventually(lambda: not kube.exists("apikeys", ns, "delete-me"), message="ApiKey gone")
    assert hash_secrets(kube, uid) == []
    assert verify(operator, key).status_code == 401


def test_a_deleted_plaintext_secret_is_never_recreated(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    key = make_key(kube, ns, "once")
    kube.core.delete_namespaced_secret("once-api-key", ns)
    kube.patch("apikeys", ns, "once", {"spec": {"label": "Once more"}})  # provoke a reconcile
    eventually(lambda: kube.status("apikeys", ns, "once").get("observedGeneration") == 2)
    time.sleep(1)
    assert kube.read_secret(ns, "once-api-key") is None
    answer = verify(operator, key)
    assert answer.status_code == 200 and answer.json()["apiKey"]["label"] == "Once more"


def test_a_restart_between_the_two_writes_leaves_exactly_the_key_in_the_secret_valid(
    operator: OperatorProcess, kube: Kube, ns: str
) -> None:
    operator.stop()
    made = kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": "half"}, "spec": {"label": "Half"}})
    uid = made["metadata"]["uid"]
    key = keys.generate()
    ISSUED.append(key)
    # Exactly what the operator leaves after writing the plaintext and dying before the hash.
    kube.core.create_namespaced_secret(ns, {
        "metadata": {"name": "half-api-key", "ownerReferences": [
            {"apiVersion": "integrations.inori.io/v1alpha1", "kind": "ApiKey", "name": "half", "uid": uid, "controller": True}]},
        "data": {"api-key": base64.b64encode(key.encode()).decode()},
    })
    operator.start()
    eventually(lambda: kube.status("apikeys", ns, "half").get("phase") == "Active")
    assert verify(operator, key).status_code == 200
    assert len(hash_secrets(kube, uid)) == 1
    assert base64.b64decode(kube.read_secret(ns, "half-api-key").data["api-key"]).decode() == key


def test_an_existing_secret_not_owned_by_the_key_is_never_overwritten(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    kube.secret(ns, "taken", {"api-key": "someone else's"})
    kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": "k"}, "spec": {"label": "K", "secretName": "taken"}})
    ready = eventually(lambda: next((c for c in kube.status("apikeys", ns, "k").get("conditions", []) if c["type"] == "Ready"), None))
    assert ready["status"] == "False" and ready["reason"] == "SecretNameConflict"
    assert base64.b64decode(kube.read_secret(ns, "taken").data["api-key"]) == b"someone else's"


def test_a_forged_hash_secret_in_a_tenant_namespace_grants_nothing(operator: OperatorProcess, kube: Kube, ns: str) -> None:
    key = keys.generate()
    kube.core.create_namespaced_secret(ns, {
        "metadata": {"name": "forged", "labels": {
            "app.kubernetes.io/managed-by": "inori-operator", "integrations.inori.io/component": "api-key-hash",
            "integrations.inori.io/apikey-uid": "00000000-0000-0000-0000-000000000000"},
            "annotations": {"integrations.inori.io/apikey-namespace": ns, "integrations.inori.io/apikey-name": "forged"}},
        "data": {"sha256": base64.b64encode(keys.hash_key(key).encode()).decode()},
    })
    time.sleep(0.5)
    assert verify(operator, key).status_code == 401


BAD_KEYS = {
    "no-header": None,
    "basic-scheme": "Basic dXNlcjpwYXNz",
    "empty-token": "Bearer",
    "bad-checksum": "Bearer " + keys.generate()[:-1] + "0",
    "ten-kilobytes": "Bearer " + "a" * 10_240,
    "unknown-key": "Bearer " + keys.generate(),
    "not-a-key": "Bearer hello",
}


@pytest.mark.parametrize("header", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_every_bad_credential_gets_the_same_401_shape(operator: OperatorProcess, header: str | None) -> None:
    for method in ("GET", "POST"):
        for path in ("/v1/verify", "/v1/events"):
            headers = {"Authorization": header} if header is not None else {}
            answer = httpx.request(method if path == "/v1/verify" else "POST", operator.base_url + path, headers=headers,
                                   content=b'{"event": "record.created", "data": {}}')
            assert answer.status_code == 401, (path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            body = answer.json()
            assert set(body) == {"error", "message"} and body["error"] in {"missing_credentials", "malformed_key", "invalid_key"}


@pytest.fixture
def event_key(operator: OperatorProcess, kube: Kube, ns: str) -> tuple[str, str]:
    return ns, make_key(kube, ns, "events")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (json.dumps({"event": "record.deleted", "data": {}}).encode(), 422, "invalid_event"),
        (json.dumps({"event": "record.created", "data": [1, 2]}).encode(), 422, "invalid_event"),
        (json.dumps({"event": "record.created"}).encode(), 422, "invalid_event"),
        (json.dumps({"event": "record.created", "data": {}, "timestamp": "yesterday"}).encode(), 422, "invalid_event"),
        (json.dumps({"event": "record.created", "data": {"x": "y" * (2 * 1024 * 1024)}}).encode(), 413, "body_too_large"),
    ],
    ids=["malformed-json", "unknown-event-type", "data-not-an-object", "data-missing", "bad-timestamp", "oversized"],
)
def test_bad_event_bodies_get_clear_errors(operator: OperatorProcess, event_key: tuple[str, str], body: bytes, status: int, code: str) -> None:
    _, key = event_key
    answer = httpx.post(operator.base_url + "/v1/events", headers={"Authorization": f"Bearer {key}"}, content=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code and answer.json()["message"]


def test_an_event_posted_with_a_key_is_delivered_to_a_webhook(
    operator: OperatorProcess, kube: Kube, event_key: tuple[str, str], receiver: Receiver
) -> None:
    ns, key = event_key
    kube.webhook(ns, "sink", receiver.url, ["certificate.uploaded"])
    eventually(lambda: kube.status("webhooks", ns, "sink").get("phase") == "Active")
    answer = httpx.post(operator.base_url + "/v1/events", headers={"Authorization": f"Bearer {key}"},
                        json={"event": "certificate.uploaded", "data": {"certificateId": "c-7"}, "timestamp": "2026-12-01T08:00:00Z"})
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["namespace"] == ns
    event = kube.get("integrationevents", ns, created["name"])
    assert event["spec"] == {"type": "certificate.uploaded", "data": {"certificateId": "c-7"}, "timestamp": "2026-12-01T08:00:00Z"}
    eventually(lambda: kube.status("integrationevents", ns, created["name"]).get("phase") == "Delivered")
    assert json.loads(receiver.requests[0].body)["data"] == {"certificateId": "c-7"}


def test_health_readiness_and_metrics_answer(operator: OperatorProcess) -> None:
    assert httpx.get(operator.base_url + "/healthz").status_code == 200
    assert httpx.get(operator.base_url + "/readyz").json()["status"] == "ready"
    text = httpx.get(operator.base_url + "/metrics").text
    for metric in ("inori_api_key_verifications_total", "inori_api_key_verification_duration_seconds_bucket", "inori_api_keys_active"):
        assert metric in text
    answer = httpx.get(operator.base_url + "/nowhere")
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"


def test_no_plaintext_key_appears_in_logs_status_events_or_metrics(operator: OperatorProcess, cluster: LocalCluster) -> None:
    assert ISSUED, "the tests above issued keys"
    places = {
        "operator logs": operator.logs(),
        "metrics": httpx.get(operator.base_url + "/metrics").text,
    }
    for resource in ("apikeys", "webhooks", "integrationevents", "events"):
        places[resource] = cluster.kubectl("get", resource, "-A", "-o", "json").stdout
    for key in ISSUED:
        for where, text in places.items():
            assert key not in text and key[6:38] not in text, f"a plaintext key leaked into {where}"
