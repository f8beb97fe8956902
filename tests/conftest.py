"""Session fixtures: one real control plane, one operator process, real receivers and SMTP."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from inori_operator.localcluster import build
from inori_operator.localcluster.cluster import LocalCluster, free_port
from support.kube import Kube
from support.operator import OperatorProcess, operator_env
from support.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "inori-system"


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(build.ensure()) as local:
        local.install_crds(ROOT / "crds")
        local.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        yield local


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Kube:
    return Kube(cluster.kubeconfig)


@pytest.fixture
def ns(kube: Kube) -> str:
    return kube.namespace()


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


class Mailbox:
    """What the SMTP server on loopback received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001 - aiosmtpd's handler API
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def about(self, text: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if text in str(m["Subject"])]


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture(scope="session")
def operator_process(cluster: LocalCluster, ca_bundle: Path, smtp: tuple[Mailbox, int],
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    port = free_port()
    env = operator_env(cluster.kubeconfig, namespace=OPERATOR_NAMESPACE, http_port=port, ca_bundle=ca_bundle, smtp_port=smtp[1])
    proc = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator.log", port)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def operator(operator_process: OperatorProcess) -> OperatorProcess:
    """The shared operator, (re)started if an earlier test stopped it."""
    if not operator_process.running:
        operator_process.start()
    return operator_process


@pytest.fixture
def mailbox(smtp: tuple[Mailbox, int]) -> Mailbox:
    return smtp[0]


@pytest.fixture
def receivers(ca: trustme.CA) -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(ca: trustme.CA, receivers: list[Receiver]) -> Receiver:
    made = Receiver(ca)
    receivers.append(made)
    return made


def closed_port() -> int:
    """A loopback port with nothing listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
