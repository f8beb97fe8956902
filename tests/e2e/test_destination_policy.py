"""The default destination policy on a real operator: no allow-list, HTTPS only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inori_operator.localcluster.cluster import LocalCluster, free_port
from support.kube import Kube, eventually
from support.operator import OperatorProcess, operator_env
from support.receiver import Receiver

REFUSED = {
    "loopback-v4": "https://127.0.0.1:{port}/hook",
    "loopback-v6": "https://[::1]:{port}/hook",
    "private": "https://10.0.0.1/hook",
    "metadata": "https://169.254.169.254/latest/meta-data",
    "name-to-loopback": "https://localhost:{port}/hook",
    "plain-http": "http://hooks.example.com/hook",
}


@pytest.fixture
def strict_operator(operator_process: OperatorProcess, cluster: LocalCluster, ca_bundle: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The shared operator steps aside for one with the default policy (no allow-list)."""
    operator_process.stop()
    port = free_port()
    env = operator_env(cluster.kubeconfig, namespace="inori-system", http_port=port, ca_bundle=ca_bundle, smtp_port=1,
                       INORI_ALLOWED_CIDRS="")
    strict = OperatorProcess(env, tmp_path / "strict.log", port)
    strict.start()
    yield strict
    strict.stop()


def test_the_default_policy_refuses_internal_destinations_and_plain_http(
    strict_operator: OperatorProcess, kube: Kube, ns: str, receiver: Receiver
) -> None:
    for name, url in REFUSED.items():
        kube.webhook(ns, name, url.format(port=receiver.port), ["record.created"])
    for name in REFUSED:
        status = eventually(lambda: (s := kube.status("webhooks", ns, name)).get("phase") and s, message=name)
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (status["phase"], ready["reason"]) == ("Invalid", "DestinationNotAllowed"), (name, ready)
    assert "SchemeNotAllowed" in next(c for c in kube.status("webhooks", ns, "plain-http")["conditions"] if c["type"] == "Ready")["message"]

    event = kube.event(ns, "record.created")["metadata"]["name"]
    status = eventually(lambda: (s := kube.status("integrationevents", ns, event)).get("phase") == "Failed" and s)
    for delivery in status["deliveries"]:
        assert delivery["state"] == "Failed" and delivery["attempts"] == 0, delivery
        assert delivery["error"].startswith("refused, not attempted"), delivery
    assert receiver.count() == 0
