"""The Helm chart: lint, render, schema, install, and least-privilege RBAC proven on the API server."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from inori_operator.localcluster import build
from inori_operator.localcluster.cluster import LocalCluster, free_port
from support.kube import Kube, eventually
from support.operator import OperatorProcess, operator_env
from support.receiver import Answer, Receiver

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "inori-integrations"
RELEASE, RELEASE_NS = "rbac", "inori-helm"
FULLNAME = "rbac-inori-integrations"


def helm(*args: str, cluster: LocalCluster | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(build.binaries().helm), *args]
    if cluster is not None:
        cmd += ["--kubeconfig", str(cluster.kubeconfig)]
    result = subprocess.run(cmd, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(*sets: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", RELEASE_NS]
    for item in sets:
        args += ["--set", item]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_helm_lint_passes() -> None:
    helm("lint", str(CHART), "--strict")


MATRIX = {
    "defaults": ((), {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering", "Deployment", "Service", "PodDisruptionBudget"}),
    "watch-namespaces": (("watchNamespaces={team-a,team-b}",), {"Role", "RoleBinding", "KopfPeering"}),
    "smtp-on": (("smtp.enabled=true", "smtp.host=mail.example.com", "smtp.existingSecret=smtp-login"), {"Deployment"}),
    "service-monitor-on": (("serviceMonitor.enabled=true",), {"ServiceMonitor"}),
    "network-policy-on": (("networkPolicy.enabled=true",), {"NetworkPolicy"}),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_the_chart_renders_for_each_values_combination(case: str) -> None:
    sets, kinds = MATRIX[case]
    docs = render(*sets)
    assert kinds <= {d["kind"] for d in docs}
    if case == "watch-namespaces":
        assert "ClusterRole" not in {d["kind"] for d in docs}
        assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "KopfPeering"} == {"team-a", "team-b"}
    if case == "smtp-on":
        env = {e["name"]: e for e in _deployment(docs)["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["INORI_SMTP_HOST"]["value"] == "mail.example.com"
        assert env["INORI_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "smtp-login"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("replicaCount=zero", "replicaCount"),
        ("operator.logLevel=LOUD", "logLevel"),
        ("operator.eventRetention=1day", "eventRetention"),
        ("destinationPolicy.allowedCidrs={not-a-cidr}", "allowedCidrs"),
        ("smtp.enabled=true", "host"),
        ("unknownKey=1", "unknownKey"),
    ],
)
def test_a_bad_value_is_rejected_by_the_schema(value: str, message: str) -> None:
    result = helm("template", RELEASE, str(CHART), "--set", value, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_charts_crds_are_the_same_files_as_crds() -> None:
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert ours == chart, "charts/inori-integrations/crds drifted from crds/: copy crds/*.yaml into the chart"


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment")


def test_the_pod_is_locked_down_and_probed() -> None:
    pod = _deployment(render())["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" and container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert _deployment(render())["spec"]["replicas"] == 2


# -- on the API server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, kube: Kube) -> str:
    kube.core.create_namespace({"metadata": {"name": RELEASE_NS}})
    result = helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NS, cluster=cluster)
    assert "STATUS: deployed" in result.stdout
    return RELEASE_NS


def test_helm_install_into_the_control_plane_succeeds(installed: str, kube: Kube) -> None:
    apps = kubernetes.client.AppsV1Api(kube.client)
    assert apps.read_namespaced_deployment(FULLNAME, installed).spec.replicas == 2
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube.client)
    assert rbac.read_cluster_role(FULLNAME).rules


def _service_account_kubeconfig(cluster: LocalCluster, tmp: Path) -> Path:
    token = cluster.kubectl("create", "token", FULLNAME, "-n", RELEASE_NS, "--duration=2h").stdout.strip()
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"] = [{"name": "operator", "context": {"cluster": "inori-local", "user": "operator"}}]
    config["current-context"] = "operator"
    path = tmp / "operator-kubeconfig"
    path.write_text(json.dumps(config))
    return path


class Replicas:
    """Two operator processes peered like the chart's two replicas; the first started leads."""

    def __init__(self, procs: list[OperatorProcess]) -> None:
        self.procs = procs

    def start(self, timeout: float) -> None:
        for proc in self.procs:
            proc.start(timeout=timeout)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    @property
    def base_url(self) -> str:
        return self.procs[0].base_url


def _signed_with(secret: bytes, request: Any) -> bool:
    return request.headers.get("X-Inori-Signature") == hmac.new(secret, request.body, hashlib.sha256).hexdigest()


def smoke(kube: Kube, replicas: Replicas, receiver: Receiver, timeout: float) -> None:
    """Everything the operator does, once, with two replicas running: exactly one may act."""
    ns = kube.namespace("smoke")
    wait: Callable[..., Any] = lambda check, what: eventually(check, timeout=timeout, message=what)  # noqa: E731
    receiver.requests.clear()
    receiver.script.clear()
    receiver.answer(Answer(500))
    kube.secret(ns, "signing", {"secret": "first"})
    kube.webhook(ns, "w", receiver.url, ["record.created"], secretRef={"name": "signing"}, delivery={"retry": 0})
    wait(lambda: kube.status("webhooks", ns, "w").get("phase") == "Active", "webhook Active")
    first = kube.event(ns, "record.created")["metadata"]["name"]
    wait(lambda: kube.status("webhooks", ns, "w").get("phase") == "Failing", "webhook Failing")
    wait(lambda: kube.status("integrationevents", ns, first).get("phase") == "Failed", "event Failed")
    wait(lambda: any(e.reason == "Failing" for e in kube.events_for(ns, "w")), "Warning Event")
    kube.core.patch_namespaced_secret("signing", ns, {"stringData": {"secret": "rotated"}})
    time.sleep(0.5)  # a watched Secret reaches the signer in milliseconds
    second = kube.event(ns, "record.created", ttlSecondsAfterFinished=0)["metadata"]["name"]
    wait(lambda: kube.status("webhooks", ns, "w").get("phase") == "Active", "webhook recovered")
    wait(lambda: not kube.exists("integrationevents", ns, second), "event deleted after retention")
    assert _signed_with(b"rotated", receiver.requests[-1]), "signed with a stale secret"

    kube.create("apikeys", ns, {"kind": "ApiKey", "metadata": {"name": "k"}, "spec": {"label": "K"}})
    wait(lambda: kube.status("apikeys", ns, "k").get("phase") == "Active", "key Active")
    key = base64.b64decode(kube.read_secret(ns, "k-api-key").data["api-key"]).decode()
    auth = {"Authorization": f"Bearer {key}"}
    for proc in replicas.procs:  # the standby verifies too
        wait(lambda: httpx.get(proc.base_url + "/v1/verify", headers=auth).status_code == 200, "key verifies")
    posted = httpx.post(replicas.base_url + "/v1/events", headers=auth, json={"event": "record.created", "data": {}})
    assert posted.status_code == 202, posted.text
    wait(lambda: kube.status("integrationevents", ns, posted.json()["name"]).get("phase") == "Delivered", "posted event delivered")
    kube.patch("apikeys", ns, "k", {"spec": {"label": "Renamed"}})
    wait(lambda: httpx.get(replicas.base_url + "/v1/verify", headers=auth).json().get("apiKey", {}).get("label") == "Renamed",
         "label follows")
    kube.patch("apikeys", ns, "k", {"spec": {"revoked": True}})
    wait(lambda: httpx.get(replicas.base_url + "/v1/verify", headers=auth).status_code == 401, "revoked key refused")
    kube.delete("apikeys", ns, "k")
    wait(lambda: not kube.exists("apikeys", ns, "k"), "ApiKey finalized")
    time.sleep(0.5)
    assert receiver.count() == 3, f"{receiver.count()} requests for 3 deliveries: both replicas delivered"

    replicas.procs[0].stop()  # a rolling update: the standby must take over deliveries
    after = kube.event(ns, "record.created")["metadata"]["name"]
    wait(lambda: kube.status("integrationevents", ns, after).get("phase") == "Delivered", "standby took over")
    assert receiver.count() == 4


@pytest.fixture
def as_service_account(installed: str, operator_process: OperatorProcess, cluster: LocalCluster, ca_bundle: Path,
                       tmp_path: Path, smtp: Any) -> Iterator[Replicas]:
    """Two peered operators running with nothing but the chart's ServiceAccount token."""
    operator_process.stop()
    kubeconfig = _service_account_kubeconfig(cluster, tmp_path)
    procs = []
    for replica in range(2):
        port = free_port()
        env = operator_env(kubeconfig, namespace=installed, http_port=port, ca_bundle=ca_bundle, smtp_port=smtp[1],
                           INORI_STANDALONE="false", INORI_PEERING_NAME=FULLNAME, INORI_PEERING_LIFETIME="15")
        procs.append(OperatorProcess(env, tmp_path / f"sa-operator-{replica}.log", port))
    replicas = Replicas(procs)
    yield replicas
    replicas.stop()


def _roles(kube: Kube) -> list[tuple[str, str | None, str]]:
    return [("ClusterRole", None, FULLNAME), ("Role", RELEASE_NS, f"{FULLNAME}-key-hashes")]


def _read(rbac: Any, kind: str, ns: str | None, name: str) -> Any:
    return rbac.read_cluster_role(name) if kind == "ClusterRole" else rbac.read_namespaced_role(name, ns)


def _replace(rbac: Any, kind: str, ns: str | None, name: str, body: Any) -> None:
    if kind == "ClusterRole":
        rbac.replace_cluster_role(name, body)
    else:
        rbac.replace_namespaced_role(name, ns, body)


@pytest.mark.timeout(1800)  # one operator restart and smoke per verb
def test_the_operator_works_with_exactly_the_charts_rbac_and_no_rule_is_unused(
    as_service_account: Replicas, kube: Kube, receiver: Receiver
) -> None:
    replicas = as_service_account
    replicas.start(timeout=30)
    smoke(kube, replicas, receiver, timeout=20)
    replicas.stop()

    rbac = kubernetes.client.RbacAuthorizationV1Api(kube.client)
    unused = []
    for kind, ns, name in _roles(kube):
        original = _read(rbac, kind, ns, name)
        for index, rule in enumerate(original.rules):
            for verb in rule.verbs:
                reduced = copy.deepcopy(original)
                reduced.rules[index].verbs = [v for v in rule.verbs if v != verb]
                if not reduced.rules[index].verbs:
                    del reduced.rules[index]
                reduced.metadata.resource_version = None  # an unconditional replace
                _replace(rbac, kind, ns, name, reduced)
                what = f"{kind} {name}: {verb} on {','.join(rule.resources)}"
                try:
                    try:
                        replicas.start(timeout=15)
                        smoke(kube, replicas, receiver, timeout=6)
                    except (AssertionError, RuntimeError, ApiException, httpx.HTTPError, KeyError):
                        pass  # the smoke failed without this permission: it is needed
                    else:
                        unused.append(what)
                    print(f"without {what}: {'smoke passed (unused!)' if what in unused else 'smoke failed (needed)'}")
                finally:
                    replicas.stop()
                    original.metadata.resource_version = None
                    _replace(rbac, kind, ns, name, original)
    assert not unused, f"permissions the operator never needed: {unused}"
