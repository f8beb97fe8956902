"""The CRDs on a real API server: established, examples accepted, bad input rejected clearly."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from inori_operator.localcluster import build
from inori_operator.localcluster.cluster import LocalCluster
from support.kube import Kube, load_yaml

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))
KINDS = ("webhooks", "apikeys", "integrationevents")


def test_the_three_crds_are_established(kube: Kube) -> None:
    for plural in KINDS:
        crd = kube.ext.read_custom_resource_definition(f"{plural}.integrations.inori.io")
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True", plural
        assert conditions.get("NamesAccepted") == "True", plural


def test_every_example_manifest_is_accepted(cluster: LocalCluster, ns: str) -> None:
    result = cluster.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples"), check=False)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"created", result.stdout)) == len(list((ROOT / "examples").glob("*.yaml")))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_an_invalid_manifest_is_rejected_with_a_clear_message(cluster: LocalCluster, ns: str, path: Path) -> None:
    expected = re.search(r"^# expect: (.+)$", path.read_text(), re.MULTILINE)
    assert expected, f"{path.name} lacks an '# expect:' line"
    result = cluster.kubectl("apply", "-n", ns, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    assert expected.group(1).strip() in result.stderr, result.stderr


def test_an_integration_events_spec_cannot_change(kube: Kube, ns: str) -> None:
    created = kube.event(ns, "record.created", {"recordId": "r-1"})
    name = created["metadata"]["name"]
    for patch in ({"spec": {"data": {"recordId": "r-2"}}}, {"spec": {"type": "vendor.created"}},
                  {"spec": {"data": {"other": "r-1"}}}):
        with pytest.raises(ApiException) as err:
            kube.patch("integrationevents", ns, name, patch)
        assert "spec is immutable" in err.value.body


def test_a_revoked_api_key_cannot_be_unrevoked(kube: Kube, ns: str) -> None:
    kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": "k"}, "spec": {"label": "K", "revoked": True}})
    with pytest.raises(ApiException) as err:
        kube.patch("apikeys", ns, "k", {"spec": {"revoked": False}})
    assert "revoked cannot be set back to false" in err.value.body


def test_defaults_fill_in_the_delivery_policy(kube: Kube, ns: str) -> None:
    made = kube.webhook(ns, "d", "https://hooks.example.com/x", ["record.created"])
    assert made["spec"]["delivery"] == {"retry": 5, "backoffPolicy": "exponential", "backoffDelay": "PT45M", "timeout": "PT10S"}
    assert made["spec"]["suspend"] is False


@pytest.mark.parametrize(
    ("resource", "columns"),
    [
        ("webhooks", ["NAME", "URL", "PHASE", "FAILURES", "LAST DELIVERY", "AGE"]),
        ("apikeys", ["NAME", "LABEL", "PREFIX", "PHASE", "LAST USED", "AGE"]),
        ("iev", ["NAME", "TYPE", "PHASE", "DELIVERED", "WEBHOOKS", "AGE"]),
    ],
)
def test_kubectl_get_shows_the_printer_columns(cluster: LocalCluster, kube: Kube, ns: str, resource: str, columns: list[str]) -> None:
    kube.webhook(ns, "w", "https://hooks.example.com/x", ["record.created"])
    kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": "k"}, "spec": {"label": "K"}})
    kube.event(ns, "record.created")
    header = cluster.kubectl("get", resource, "-n", ns).stdout.splitlines()[0]
    assert re.split(r"\s{2,}", header.strip()) == columns


def test_kubectl_explain_describes_the_fields(cluster: LocalCluster) -> None:
    spec = cluster.kubectl("explain", "webhook.spec").stdout
    for field in ("url", "events", "secretRef", "suspend", "delivery", "alerts"):
        assert re.search(rf"^\s+{field}\s", spec, re.MULTILINE), field
    delivery = cluster.kubectl("explain", "webhook.spec.delivery").stdout
    assert "ISO 8601" in delivery and "retry" in delivery
    assert "DESCRIPTION" in cluster.kubectl("explain", "apikey.spec.revoked").stdout


def test_starting_and_stopping_a_control_plane_leaves_no_process_behind() -> None:
    local = LocalCluster(build.ensure()).start()
    pids = local.pids
    assert len(pids) == 2
    workdir = local.dir
    local.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not workdir.exists()


def test_loading_every_crd_file_yields_one_crd_each() -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        docs = load_yaml(path)
        assert [d["kind"] for d in docs] == ["CustomResourceDefinition"], path.name
