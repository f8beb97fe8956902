"""The operator as a real child process: started, stopped, killed and restarted by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class OperatorProcess:
    def __init__(self, env: dict[str, str], log_path: Path, http_port: int) -> None:
        self.env = env
        self.log_path = log_path
        self.http_port = http_port
        self.base_url = f"http://127.0.0.1:{http_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inori_operator.cli", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        time.sleep(0.5)  # let kopf finish its initial listing
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"operator not ready in {timeout}s:\n{self.logs()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM, as Kubernetes does: the operator flushes its status writes and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, with nothing flushed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)


def operator_env(kubeconfig: Path, *, namespace: str, http_port: int, ca_bundle: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INORI_")}
    env.update(
        KUBECONFIG=str(kubeconfig),
        INORI_NAMESPACE=namespace,
        INORI_HTTP_HOST="127.0.0.1",
        INORI_HTTP_PORT=str(http_port),
        INORI_ALLOWED_CIDRS="127.0.0.1/32",  # receivers bind here; ::1, 127.0.0.2 etc. stay refused
        INORI_CA_BUNDLE=str(ca_bundle),
        INORI_SMTP_HOST="127.0.0.1",
        INORI_SMTP_PORT=str(smtp_port),
        INORI_SMTP_STARTTLS="false",
        INORI_ALERT_RECIPIENTS="oncall@example.com",
        INORI_STANDALONE="true",
        INORI_LOG_FORMAT="json",
        INORI_LOG_LEVEL="INFO",
        INORI_EVENT_RETENTION="PT1H",
    )
    env.update(extra)
    return env
