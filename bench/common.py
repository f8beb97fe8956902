"""Shared pieces of the benchmarks: control plane and operator start/stop, percentiles, the table.

Everything here runs on loopback only. Child processes (etcd, kube-apiserver, the operator, the
benchmark's own helper processes) are tied to this process with ``PR_SET_PDEATHSIG``, so an
interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OPERATOR_NAMESPACE = "inori-system"
GROUP, VERSION = "integrations.inori.io", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
HEY_MODULE = "github.com/rakyll/hey@v0.1.5"  # what @latest resolves to; pinned for repeatable runs

T = TypeVar("T")
_STARTED = time.monotonic()


# -- progress and small helpers -------------------------------------------------------------------

def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (no orphans on Ctrl-C)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_child(conn: Any, proc: Any) -> None:
    """Ask a helper process (receiver, floor server) to stop over its pipe; kill it if it lingers."""
    try:
        conn.send("stop")
    except OSError:
        pass
    proc.join(10)
    if proc.is_alive():
        proc.kill()


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile with linear interpolation between closest ranks (numpy's default).

    ``math.inf`` stands for a sample that never completed (say a delivery that did not arrive):
    a percentile that reaches into those is infinite.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    if math.isinf(ordered[high]):
        return ordered[high] if rank > low or math.isinf(ordered[low]) else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_for(check: Callable[[], T], *, timeout: float, interval: float = 0.25, what: str) -> T:
    """Poll ``check`` until it returns something truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not done after {timeout:.0f}s (last: {last!r})")


def paced(count: int, per_second: float) -> Iterator[int]:
    """Yield 0..count-1 on a fixed schedule (no drift: slot i starts at start + i / rate)."""
    start = time.monotonic()
    for i in range(count):
        delay = start + i / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (and friends) of a process from /proc, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Vm"):
                name, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[name] = int(parts[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by named processes between ``start`` and ``stop``: who had the cores."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._began = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.monotonic() - self._began
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}

    def summary(self) -> str:
        cores = os.cpu_count() or 1
        parts = ", ".join(f"{name} {used:.1f}s" for name, used in sorted(self.used.items(), key=lambda kv: -kv[1]))
        return (f"{sum(self.used.values()):.1f} CPU-seconds of the {self.wall * cores:.1f} available "
                f"({cores} cores x {self.wall:.1f}s): {parts}")


class BenchTimeout(Exception):
    """A benchmark ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: int, name: str) -> Iterator[None]:
    """Raise BenchTimeout in the main thread after ``seconds``; cleanup in ``finally`` still runs."""

    def expired(signum: int, frame: Any) -> None:
        raise BenchTimeout(f"{name} exceeded its {seconds}s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- formatting ------------------------------------------------------------------------------------

def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "not delivered"
    value = seconds * 1000
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def per_s(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f}{unit}"


def mb(size: float) -> str:
    return f"{size / 2**20:.1f} MB"


def times(a: float, b: float) -> str:
    """Ratio a / b as '3.2x'."""
    if not b or math.isnan(a) or math.isnan(b):
        return "n/a"
    if math.isinf(a):
        return "inf"
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def share(a: float, b: float) -> str:
    """Ratio a / b as '0.62x (62% of floor)'."""
    if not b:
        return "n/a"
    return f"{a / b:.2f}x ({100 * a / b:.0f}% of floor)"


def verdict(target: str, ok: bool | None) -> str:
    if ok is None:
        return target
    return f"{target}: {'met' if ok else '**MISSED**'}"


@dataclass
class Row:
    benchmark: str
    figure: str
    floor: str
    ratio: str
    target: str


@dataclass
class Result:
    rows: list[Row]
    notes: list[str]


def header() -> str:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", ".", ":(exclude)bench")
    if dirty:
        commit += " (with uncommitted changes outside bench/)"
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nproc = len(os.sched_getaffinity(0))
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now} | commit {commit} | machine: nproc={nproc}"
        + (f" ({cpu})" if cpu else "")
        + f", Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def code_fingerprint() -> str:
    """HEAD plus a hash of uncommitted changes to what is measured (operator code, CRDs, lock)."""
    import hashlib

    head = _git("rev-parse", "HEAD")
    diff = _git("diff", "HEAD", "--", "operator", "crds", "pyproject.toml", "requirements.lock")
    return f"{head[:12]}+{hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else 'clean'}"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def render(head: str, rows: list[Row], notes: list[str], total_seconds: float) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Benchmarks",
        "",
        head,
        "",
        "| benchmark | figure | floor (same run) | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {esc(r.benchmark)} | {esc(r.figure)} | {esc(r.floor)} | {esc(r.ratio)} | {esc(r.target)} |" for r in rows]
    lines += ["", f"Total runtime: {total_seconds:.0f}s.", ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def write_results(text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / "latest.md"
    tmp = RESULTS / "latest.md.tmp"
    tmp.write_text(text)
    tmp.replace(target)
    return target


# -- the control plane -----------------------------------------------------------------------------

def api_client(kubeconfig: Path | str, pool: int = 16) -> Any:
    """A kubernetes ApiClient whose connection pool fits ``pool`` concurrent threads."""
    import kubernetes

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return kubernetes.client.ApiClient(configuration)


class ControlPlane:
    """One local etcd + kube-apiserver with the CRDs and the operator's namespace, plus clients."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="inori-bench-"))
        self.cluster: Any = None
        self._operators: list[Operator] = []

    def __enter__(self) -> ControlPlane:
        import kubernetes

        from inori_operator.localcluster import build
        from inori_operator.localcluster.cluster import LocalCluster

        progress("control plane: starting etcd + kube-apiserver (binaries from the build cache)")
        self.cluster = LocalCluster(build.ensure()).start()
        self.cluster.install_crds(ROOT / "crds")
        self.kubeconfig = self.cluster.kubeconfig
        self.api = api_client(self.kubeconfig)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.namespace(OPERATOR_NAMESPACE)
        progress(f"control plane: ready at {self.cluster.server}")
        return self

    def __exit__(self, *exc: Any) -> None:
        for operator in self._operators:
            operator.stop()
        with contextlib.suppress(Exception):
            self.api.close()
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        progress("control plane: stopped")

    def pids(self) -> dict[str, int]:
        """The control plane's processes by name (etcd, kube-apiserver)."""
        return self.cluster.processes

    def namespace(self, name: str) -> str:
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, patch, _content_type="application/merge-patch+json"
        )

    def operator(self, **extra_env: str) -> Operator:
        op = Operator(self.kubeconfig, self.workdir / f"operator-{len(self._operators)}.log", extra_env)
        self._operators.append(op)
        return op


class Operator:
    """The operator as a child process (``python -m inori_operator.cli run``), as in production."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str]) -> None:
        from inori_operator.localcluster.cluster import free_port

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INORI_")}
        self.env.update(
            KUBECONFIG=str(kubeconfig),
            INORI_NAMESPACE=OPERATOR_NAMESPACE,
            INORI_HTTP_HOST="127.0.0.1",
            INORI_HTTP_PORT=str(self.port),
            INORI_ALLOWED_CIDRS="127.0.0.1/32",
            INORI_STANDALONE="true",
            INORI_LOG_LEVEL="WARNING",
            INORI_LOG_FORMAT="json",
        )
        self.env.update(extra_env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.metric_failures: list[str] = []  # /metrics answers other than 200, as seen

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> None:
        progress("operator: starting")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inori_operator.cli", "run"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        wait_for(lambda: self.alive() and self.get("/readyz")[0] == 200, timeout=timeout, interval=0.1, what="operator /readyz")
        time.sleep(1.0)  # let kopf finish its initial listings
        progress(f"operator: ready (pid {self.pid}, HTTP API on {self.base_url})")

    @contextlib.contextmanager
    def profiled(self, phase: str) -> Iterator[None]:
        """With ``BENCH_PROFILE=<dir>``, sample the operator with py-spy during ``phase``.

        Writes ``<dir>/<phase>.txt`` in py-spy's raw (collapsed stacks) format, which any flame
        graph tool reads. Sampling costs the operator a little CPU, so profiled figures are not
        comparable with unprofiled ones.
        """
        target = os.environ.get("BENCH_PROFILE")
        if not target:
            yield
            return
        out = Path(target) / f"{phase}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(self.pid), "--format", "raw",
             "--rate", "100", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
            progress(f"operator: profile of {phase} in {out}")

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}")
        return True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def warning_summary(self, distinct: int = 4) -> str:
        """What the operator logged (it runs at WARNING): counts of each distinct message, or ''."""
        if not self.log_path.exists():
            return ""
        counts: dict[str, int] = {}
        startup = total = 0
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                text = f"{record.get('severity') or record.get('levelname') or '?'}: {record.get('message', '')}"
            except (ValueError, AttributeError):
                text = f"(unstructured) {line.strip()}"
            if "storage is (re)initializing" in text:
                startup += 1  # kopf retrying its first LIST while a fresh API server warms up
                continue
            total += 1
            shape = re.sub(r"\d+(\.\d+)?", "N", text)[:150]
            counts[shape] = counts.get(shape, 0) + 1
        parts = []
        if total:
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:distinct]
            parts.append(f"{total} warning/error line(s): " + "; ".join(f"{n}x \"{shape}\"" for shape, n in top))
        if startup:
            parts.append(f"{startup} startup retry line(s) (API server storage still initializing)")
        return ", and ".join(parts)

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def readyz(self) -> dict[str, Any]:
        status, body = self.get("/readyz")
        return json.loads(body) if status == 200 else {}

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of the operator's /metrics, e.g. metric('inori_webhooks', 'phase="Active"')."""
        status, body = self.get("/metrics")
        if status != 200:
            self.metric_failures.append(f"{status} {body[:120].decode(errors='replace')}")
            return math.nan
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in body.decode().splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return math.nan

    def memory(self) -> dict[str, int]:
        self.alive()
        return proc_status(self.pid)


# -- tools -----------------------------------------------------------------------------------------

def bare_python_rss(code: str, timeout: float = 60) -> dict[str, int]:
    """VmRSS/VmHWM of ``python -c code`` once it prints 'ready' (then it is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT, preexec_fn=die_with_parent, text=True
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and "ready" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"floor process exited with {proc.returncode}")
        time.sleep(0.5)
        status = proc_status(proc.pid)
        status["_stdout"] = line  # type: ignore[assignment]
        return status
    finally:
        proc.kill()
        proc.wait()


def hey_path() -> Path:
    from inori_operator.localcluster import build

    return build.cache_root() / "tools-hey" / "hey"


def ensure_hey() -> Path:
    """The ``hey`` load generator, built once with ``go install`` into the shared cache."""
    path = hey_path()
    if path.exists():
        return path
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError("the API key benchmark needs Go to build the 'hey' load generator")
    progress(f"hey: building {HEY_MODULE} into {path.parent} (once)")
    subprocess.run(
        [go, "install", HEY_MODULE], env={**os.environ, "GOBIN": str(path.parent)}, check=True, timeout=600
    )
    progress("hey: built")
    return path


@dataclass
class HeyResult:
    requests_per_second: float
    p50: float
    p99: float
    codes: dict[int, int]
    errors: str

    @property
    def total(self) -> int:
        return sum(self.codes.values())


def run_hey(url: str, *, seconds: int, concurrency: int, headers: dict[str, str]) -> HeyResult:
    args = [str(ensure_hey()), "-z", f"{seconds}s", "-c", str(concurrency)]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    args.append(url)
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    if result.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"hey failed ({result.returncode}): {result.stderr.strip()[:500]} {out[:500]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {int(p): float(v) for p, v in re.findall(r"^\s+(\d+)%+ in ([\d.]+) secs", out, re.MULTILINE)}
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = out.split("Error distribution:", 1)[1].strip() if "Error distribution:" in out else ""
    return HeyResult(rps, lat.get(50, math.nan), lat.get(99, math.nan), codes, errors)
