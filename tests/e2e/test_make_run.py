"""`make run`'s command on a machine with no cluster configured: it brings its own, and cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from inori_operator.localcluster import build
from inori_operator.localcluster.cluster import free_port
from support.kube import Kube, eventually

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], text=True, capture_output=True).stdout
    tree, found = {}, []
    for line in out.splitlines():
        child, parent = map(int, line.split())
        tree.setdefault(parent, []).append(child)
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_dev_starts_a_local_control_plane_runs_the_operator_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("INORI_")}
    # A HOME without ~/.kube/config: "no cluster configured". The binaries stay where they are cached.
    env.update(HOME=str(tmp_path), INORI_CACHE_DIR=str(build.cache_root()), INORI_HTTP_PORT=str(port), INORI_HTTP_HOST="127.0.0.1", INORI_LOG_FORMAT="json")
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "inori_operator.cli", "dev"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        eventually(lambda: "Ctrl-C stops everything" in log.read_text(), timeout=90, message="local cluster ready")
        eventually(lambda: _ready(port), timeout=30, message="operator ready")
        kube = Kube(ROOT / ".run" / "kubeconfig")
        kube.webhook("team-a", "hello", "https://hooks.example.com/x", ["record.created"])
        # Reconciled: Active where the name resolves, Invalid (UnresolvableHost) in a sandbox without DNS.
        eventually(lambda: kube.status("webhooks", "team-a", "hello").get("observedGeneration") == 1, message="reconciled")
        spawned = _children(proc.pid)
        assert len(spawned) >= 2  # etcd and kube-apiserver
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        interrupted = time.monotonic()
        code = proc.wait(timeout=60)
        stopped_in = time.monotonic() - interrupted
    assert code == 0, log.read_text()[-3000:]
    # Well inside a pod's 30 s grace period, control plane included (kopf alone used to wait 5 s
    # for our tasks and then cancel them).
    assert stopped_in < 10, f"{stopped_in:.1f}s from Ctrl-C to exit"
    time.sleep(0.5)
    for pid in spawned:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower(), pid
