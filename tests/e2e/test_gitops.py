"""What Argo CD relies on: the operator never writes a resource's spec, only status (and a finalizer)."""

from __future__ import annotations

from typing import Any

from support.kube import Kube, eventually
from support.operator import OperatorProcess
from support.receiver import Answer, Receiver

OPERATOR_MANAGERS = ("inori-operator", "kopf")


def _operator_fields(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in obj["metadata"].get("managedFields", []) if m["manager"].split("/")[0] in OPERATOR_MANAGERS]


def test_the_operator_writes_only_status_and_its_finalizer_never_spec(
    operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    receiver.answer(Answer(500))
    kube.webhook(ns, "w", receiver.url, ["record.created"], delivery={"retry": 0})
    kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": "k"}, "spec": {"label": "K"}})
    event = kube.event(ns, "record.created")["metadata"]["name"]
    eventually(lambda: kube.status("integrationevents", ns, event).get("phase") == "Failed")
    eventually(lambda: kube.status("webhooks", ns, "w").get("phase") == "Failing")
    eventually(lambda: kube.status("apikeys", ns, "k").get("phase") == "Active")

    for plural, name in (("webhooks", "w"), ("apikeys", "k"), ("integrationevents", event)):
        obj = kube.get(plural, ns, name)
        assert obj["metadata"]["generation"] == 1, f"{plural}/{name}: spec changed"
        writes = _operator_fields(obj)
        assert writes, f"{plural}/{name}: no operator write recorded"
        for entry in writes:
            fields = entry.get("fieldsV1", {})
            if entry.get("subresource") == "status":
                assert set(fields) == {"f:status"}, entry
            else:
                assert set(fields) == {"f:metadata"} and set(fields["f:metadata"]) == {"f:finalizers"}, entry
