"""Run etcd and kube-apiserver on loopback, the way controller-runtime's envtest does.

Everything lives in one temporary directory (etcd data, certificates, kubeconfig) that is removed
on stop. Child processes get ``PR_SET_PDEATHSIG`` so they die with us even when a test run is
killed, and ``stop()`` is idempotent and registered with ``atexit``.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from . import build, pki

_PR_SET_PDEATHSIG = 1
_STARTUP_TIMEOUT = 90.0


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it if the parent goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ControlPlaneError(RuntimeError):
    """The local control plane did not come up; the message carries the tail of its log."""


class LocalCluster:
    """etcd + kube-apiserver with RBAC, a client CA and an admin kubeconfig, all on loopback."""

    def __init__(self, binaries: build.Binaries | None = None, workdir: Path | None = None) -> None:
        self.binaries = binaries or build.ensure()
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="inori-cluster-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.dir / "kubeconfig"
        self.server = ""
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._logs: dict[str, Path] = {}
        self.ca: pki.CertificateAuthority | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        atexit.register(self.stop)
        try:
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._procs.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [proc.pid for _, proc in self._procs]

    @property
    def processes(self) -> dict[str, int]:
        """The running control-plane processes by name (for resource accounting)."""
        return {name: proc.pid for name, proc in self._procs}

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log_path = self.dir / f"{name}.log"
        self._logs[name] = log_path
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # a terminal Ctrl-C reaches us, and we stop them in order
            )
        self._procs.append((name, proc))
        return proc

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--name=default",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        certs = self.dir / "pki"
        certs.mkdir()
        self.ca = ca = pki.CertificateAuthority()
        serving = ca.issue("kube-apiserver", hosts=("127.0.0.1", "localhost", "::1"), server=True)
        admin = ca.issue("inori-admin", organization="system:masters")
        sa_private, sa_public = pki.service_account_key()
        paths = {
            "ca": pki.write(certs / "ca.crt", ca.cert_pem),
            "tls_cert": pki.write(certs / "apiserver.crt", serving.cert_pem),
            "tls_key": pki.write(certs / "apiserver.key", serving.key_pem),
            "sa_key": pki.write(certs / "sa.key", sa_private),
            "sa_pub": pki.write(certs / "sa.pub", sa_public),
        }
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={certs}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",  # no Service endpoints for loopback
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                f"--client-ca-file={paths['ca']}",
                f"--tls-cert-file={paths['tls_cert']}",
                f"--tls-private-key-file={paths['tls_key']}",
                f"--service-account-key-file={paths['sa_pub']}",
                f"--service-account-signing-key-file={paths['sa_key']}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--disable-admission-plugins=ServiceAccount",
                "--v=0",
            ],
        )
        self._write_kubeconfig(ca.cert_pem, admin)

    def _write_kubeconfig(self, ca_pem: bytes, admin: pki.KeyPair) -> None:
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "inori-local", "cluster": {"server": self.server, "certificate-authority-data": b64(ca_pem)}}],
            "users": [{"name": "inori-admin", "user": {"client-certificate-data": b64(admin.cert_pem), "client-key-data": b64(admin.key_pem)}}],
            "contexts": [{"name": "inori-local", "context": {"cluster": "inori-local", "user": "inori-admin"}}],
            "current-context": "inori-local",
        }
        pki.write(self.kubeconfig, json.dumps(config, indent=2).encode())
        self._admin = admin

    # -- readiness ----------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.ca is not None
        ctx = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        cert = self.dir / "pki" / "admin.crt"
        key = self.dir / "pki" / "admin.key"
        pki.write(cert, self._admin.cert_pem)
        pki.write(key, self._admin.key_pem)
        ctx.load_cert_chain(cert, key)
        return ctx

    def _get(self, path: str, ctx: ssl.SSLContext) -> int:
        try:
            with urllib.request.urlopen(self.server + path, context=ctx, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return 0

    def _wait_ready(self) -> None:
        ctx = self._ssl_context()
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            if self._get("/healthz", ctx) == 200 and self._get("/api/v1/namespaces/default", ctx) == 200:
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready after {_STARTUP_TIMEOUT:.0f}s:\n{self.log_tail('kube-apiserver')}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self._logs.get(name)
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- helpers ------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            text=True,
            capture_output=True,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
        return result

    def install_crds(self, crd_dir: Path, timeout: str = "60s") -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
        self.kubectl("wait", "--for=condition=Established", f"--timeout={timeout}", "-f", str(crd_dir))


def environment(cluster: LocalCluster) -> dict[str, str]:
    """Variables that point kubectl and helm at the cluster."""
    path = os.pathsep.join([str(cluster.binaries.kubectl.parent), str(cluster.binaries.helm.parent), os.environ.get("PATH", "")])
    return {"KUBECONFIG": str(cluster.kubeconfig), "PATH": path}
