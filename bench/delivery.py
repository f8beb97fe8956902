"""Delivery benchmark: create-to-delivery latency, burst throughput (median of 3), memory with 10,000 Webhooks.

One local control plane; the operator as a child process. The webhook receiver is an HTTPS
aiohttp server in its own process (so it never shares a GIL with the load generator) that notes
``time.time()`` on arrival of each POST with its ``X-Inori-Delivery`` and the body's ``id`` (the
IntegrationEvent's uid). Latency is arrival minus the ``time.time()`` taken just before the
IntegrationEvent's create request: the whole path API server -> watch -> operator -> HTTPS POST.

Floors, measured in the same run on the same control plane before the operator starts:
  (a) the API server's create-to-watch-notification latency for IntegrationEvents, seen by a bare
      watcher in another process, at the same pace as the operator's latency run;
  (b) the API server's create rate for IntegrationEvents with the same client and thread pool;
  (c) a bare pooled httpx.AsyncClient's POST rate to the same receiver;
  (d) the RSS of a bare Python process that imports kopf, kubernetes and aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import common
from .common import GROUP, VERSION, Row, progress

NS_FLOOR = "bench-floor"
NS_DELIVERY = "bench-delivery"
NS_MEMORY = "bench-memory"
EVENTS = "integrationevents"

HOOKS = 10
WARMUP_EVENTS = 10
LATENCY_EVENTS = 500
PACE = 25.0  # events per second
BURST_EVENTS = 1000
BURSTS = 3
CREATORS = 8
MEMORY_WEBHOOKS = 10_000
POSTS = 10_000
POST_CONCURRENCIES = (100, 16, 10)  # httpx's pool collapses at high concurrency; the best one is the floor
POST_SECONDS = 8.0  # time cap per floor measurement
STALL = 30.0  # seconds without a new arrival that end a wait (a delivery attempt times out after 10s)
EVENT_TYPE = "record.created"


# -- the receiver (its own process) ----------------------------------------------------------------

def _receiver_main(cert_file: str, key_file: str, conn: Any) -> None:
    common.die_with_parent()
    import logging

    from aiohttp import web

    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # aborted requests are counted instead
    records: list[tuple[float, str | None, str | None]] = []
    aborted = [0]  # requests the client gave up on before sending the whole body

    async def hook(request: web.Request) -> web.Response:
        arrived = time.time()
        try:
            body = await request.read()
        except (ConnectionResetError, ConnectionError):
            aborted[0] += 1
            raise
        try:
            uid = json.loads(body).get("id")
        except (ValueError, AttributeError):
            uid = None
        records.append((arrived, request.headers.get("X-Inori-Delivery"), uid))
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock, ssl_context=ctx, backlog=1024)
        await site.start()
        conn.send(("port", sock.getsockname()[1]))
        loop = asyncio.get_running_loop()
        while True:  # commands are served on the loop thread: no race with the handler
            command = await loop.run_in_executor(None, conn.recv)
            if command == "count":
                conn.send(len(records))
            elif command == "aborted":
                conn.send(aborted[0])
            elif command == "take":
                taken = list(records)
                records.clear()
                conn.send(taken)
            else:
                break
        await runner.cleanup()

    asyncio.run(main())


class Receiver:
    def __init__(self, cert_file: Path, key_file: Path) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_receiver_main, args=(str(cert_file), str(key_file), child), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the receiver did not start")
        _, self.port = self.conn.recv()
        self.base = f"https://127.0.0.1:{self.port}"

    def _call(self, command: str, timeout: float = 60) -> Any:
        self.conn.send(command)
        if not self.conn.poll(timeout):
            raise TimeoutError(f"receiver did not answer {command!r}")
        return self.conn.recv()

    def count(self) -> int:
        return int(self._call("count"))

    def aborted(self) -> int:
        return int(self._call("aborted"))

    def take(self) -> list[tuple[float, str | None, str | None]]:
        return self._call("take")

    def stop(self) -> None:
        common.stop_child(self.conn, self.proc)


# -- floor (a): the API server's create-to-watch latency, watched from another process ------------

def _watcher_main(kubeconfig: str, namespace: str, out: Any) -> None:
    common.die_with_parent()
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(common.api_client(kubeconfig, pool=2))
    version = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, EVENTS, limit=1)["metadata"]["resourceVersion"]
    arrivals: dict[str, float] = {}
    try:
        watch = kubernetes.watch.Watch()
        for event in watch.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, EVENTS,
                                  resource_version=version, timeout_seconds=180):
            now = time.time()
            if event["type"] != "ADDED":
                continue
            name = event["object"]["metadata"]["name"]
            arrivals[name] = now
            if name.startswith("warm-"):
                out.put(("seen", name))
            if name == "stop":
                watch.stop()
                break
    finally:
        out.put(("done", arrivals))


def event_body(i: int, *, name: str | None = None) -> dict[str, Any]:
    metadata = {"name": name} if name else {"generateName": "bench-"}
    return {
        "apiVersion": common.API_VERSION,
        "kind": "IntegrationEvent",
        "metadata": metadata,
        "spec": {"type": EVENT_TYPE, "data": {"recordId": f"r-{i:05d}", "vendor": "Acme Corp", "from": "pending", "to": "compliant"}},
    }


def floor_watch_latency(cp: common.ControlPlane) -> list[float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_watcher_main, args=(str(cp.kubeconfig), NS_FLOOR, queue), daemon=True)
    proc.start()
    try:
        for attempt in range(60):  # until the watch is connected and delivering
            cp.create(EVENTS, NS_FLOOR, event_body(attempt, name=f"warm-{attempt}"))
            try:
                kind, _ = queue.get(timeout=1.0)
                if kind == "seen":
                    break
            except Exception:  # noqa: BLE001 - queue.Empty: not connected yet
                continue
        else:
            raise RuntimeError("the floor watcher never saw an object")
        sent: dict[str, float] = {}
        for i in common.paced(LATENCY_EVENTS, PACE):
            name = f"lat-{i:04d}"
            sent[name] = time.time()
            cp.create(EVENTS, NS_FLOOR, event_body(i, name=name))
        cp.create(EVENTS, NS_FLOOR, event_body(0, name="stop"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kind, payload = queue.get(timeout=max(0.1, deadline - time.monotonic()))
            if kind == "done":
                arrivals = payload
                break
        else:
            raise TimeoutError("the floor watcher did not finish")
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    missing = [n for n in sent if n not in arrivals]
    if missing:
        raise RuntimeError(f"the floor watcher missed {len(missing)} objects")
    return [arrivals[n] - sent[n] for n in sent]


# -- floor (b): the API server's create rate; the operator's burst uses the same code ------------

def create_burst(cp: common.ControlPlane, namespace: str, count: int) -> tuple[list[str], float, float]:
    """Create ``count`` IntegrationEvents from CREATORS threads; (uids, start, end) in time.time()."""
    uids: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        created = cp.create(EVENTS, namespace, event_body(i))
        with lock:
            uids.append(created["metadata"]["uid"])

    with ThreadPoolExecutor(CREATORS) as pool:
        start = time.time()
        list(pool.map(one, range(count)))
        end = time.time()
    return uids, start, end


# -- floor (c): a bare pooled httpx client's POST rate to the same receiver ------------------------

def _floor_body() -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"id": "floor", "event": EVENT_TYPE, "timestamp": "2026-01-01T00:00:00Z",
                       "data": {"recordId": "r-00000", "vendor": "Acme Corp", "from": "pending", "to": "compliant"}},
                      separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json", "X-Inori-Event": EVENT_TYPE, "X-Inori-Delivery": "floor"}


async def _post_rate(url: str, ca_file: Path, total: int, concurrency: int, seconds: float) -> tuple[float, int, int]:
    """(POSTs/s, non-200 answers, POSTs done) for one pooled httpx.AsyncClient, capped at ``seconds``."""
    import httpx

    ctx = ssl.create_default_context(cafile=str(ca_file))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30)
    body, headers = _floor_body()
    failures = done = 0
    async with httpx.AsyncClient(verify=ctx, limits=limits, timeout=30, trust_env=False) as client:
        await asyncio.gather(*(client.post(url, content=body, headers=headers) for _ in range(concurrency)))  # open the pool
        todo = iter(range(total))
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal failures, done
            for _ in todo:
                if time.perf_counter() > stop_at:
                    return
                response = await client.post(url, content=body, headers=headers)
                failures += response.status_code != 200
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed, failures, done


async def _aiohttp_rate(url: str, ca_file: Path, total: int, concurrency: int) -> float:
    """The receiver's capacity, seen by an aiohttp client: shows the receiver is not the limit."""
    import aiohttp

    ctx = ssl.create_default_context(cafile=str(ca_file))
    body, headers = _floor_body()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency, ssl=ctx)) as session:
        async def one() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(concurrency)))
        todo = iter(range(total))

        async def worker() -> None:
            for _ in todo:
                await one()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


# -- the benchmark ---------------------------------------------------------------------------------

@dataclass
class Burst:
    run: int
    delivered: int
    expected: int
    seconds: float
    create_seconds: float
    duplicates: int
    failed_attempts: float
    health: str
    how: str
    cpu: str
    status_writes: float

    @property
    def throughput(self) -> float:
        return self.delivered / self.seconds

    @property
    def create_rate(self) -> float:
        return BURST_EVENTS / self.create_seconds

    @property
    def complete(self) -> bool:
        return self.delivered == self.expected

    def summary(self) -> str:
        return (f"#{self.run}: {self.throughput:,.0f} deliveries/s ({self.delivered:,} of {self.expected:,} in "
                f"{self.seconds:.1f}s, creates {self.create_seconds:.1f}s of it; {self.how}; {self.duplicates} "
                f"duplicate(s), {self.failed_attempts:g} failed attempts; Webhooks afterwards: {self.health}; "
                f"CPU {self.cpu}; {self.status_writes:,.0f} status writes)")


def _burst(cp: common.ControlPlane, operator: common.Operator, receiver: Receiver, run: int) -> Burst:
    progress(f"delivery (2): burst {run} of {BURSTS}: {BURST_EVENTS} events from {CREATORS} threads, x{HOOKS} webhooks")
    writes_before = operator.metric("inori_status_writes_total")
    meter = common.CpuMeter({**cp.pids(), "operator": operator.pid, "receiver": receiver.proc.pid,
                             "bench (creates, receiver queries)": os.getpid()})
    with operator.profiled(f"burst-{run}"), meter:
        uids, start, end = create_burst(cp, NS_DELIVERY, BURST_EVENTS)
        expected = BURST_EVENTS * HOOKS
        failed_before, retries_before = _failed_attempts(operator), _pending_retries(operator)
        _, how = _wait_deliveries(receiver, operator, expected, 150, retries_before)
    first, dups = _unique(receiver.take(), set(uids))
    failed_attempts = _failed_attempts(operator) - failed_before
    last = max((a for a, _ in first.values()), default=end)
    if len(first) < expected:
        retrying = _pending_retries(operator) - retries_before
        how += (f"; of the {expected - len(first):,} missing, {retrying:g} were scheduled for a retry and "
                f"{failed_attempts:g} attempts had failed, so the rest were never attempted")
    burst = Burst(run, len(first), expected, last - start, end - start, dups, failed_attempts, _hook_health(cp), how,
                  meter.summary(), operator.metric("inori_status_writes_total") - writes_before)
    progress(f"delivery (2): {burst.summary()}")
    time.sleep(1.0)  # let the last status writes settle before the next burst
    return burst


def _pending_retries(operator: common.Operator) -> float:
    return operator.metric("inori_pending_retries")


def _wait_deliveries(receiver: Receiver, operator: common.Operator, expected: int, timeout: float,
                     retries_before: float = 0.0) -> tuple[int, str]:
    """Wait until every delivery arrived or is scheduled for a retry, nothing arrived for STALL seconds,
    or ``timeout``. A failed attempt is retried only after the Webhook's backoff (45 minutes by default)."""
    deadline = time.monotonic() + timeout
    count, last_change = receiver.count(), time.monotonic()
    while True:
        operator.alive()
        if count >= expected:
            return count, "all arrived"
        retrying = _pending_retries(operator) - retries_before  # NaN when /metrics fails: keep waiting
        if count + retrying >= expected:
            return count, f"the other {expected - count} are scheduled for a retry"
        now = time.monotonic()
        if now - last_change > STALL:
            return count, f"stalled: nothing new for {STALL:g}s"
        if now > deadline:
            return count, f"timed out after {timeout:g}s"
        time.sleep(0.25)
        new = receiver.count()
        if new != count:
            count, last_change = new, time.monotonic()


def _hook_health(cp: common.ControlPlane) -> str:
    items = cp.custom.list_namespaced_custom_object(GROUP, VERSION, NS_DELIVERY, "webhooks")["items"]
    phases = sorted({(o.get("status") or {}).get("phase", "?") for o in items})
    failures = [int((o.get("status") or {}).get("consecutiveFailures") or 0) for o in items]
    return f"phase {'/'.join(phases)}, consecutiveFailures {min(failures)}..{max(failures)}"


def _failed_attempts(operator: common.Operator) -> float:
    """The operator's failed-attempt counter (the labelled series only exists after a first failure)."""
    value = operator.metric("inori_delivery_attempts_total", 'outcome="failure"')
    return 0.0 if math.isnan(value) else value


def _unique(records: list[tuple[float, str | None, str | None]], uids: set[str]) -> tuple[dict[str, tuple[float, str]], int]:
    """First arrival per X-Inori-Delivery among deliveries of ``uids``; and the duplicate count."""
    first: dict[str, tuple[float, str]] = {}
    duplicates = 0
    for arrived, delivery, uid in sorted(records):
        if uid not in uids or delivery is None:
            continue
        if delivery in first:
            duplicates += 1
            continue
        first[delivery] = (arrived, uid)
    return first, duplicates


def run() -> common.Result:
    import trustme

    rows: list[Row] = []
    notes: list[str] = []
    with common.ControlPlane() as cp:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca_file, cert_file, key_file = cp.workdir / "ca.pem", cp.workdir / "receiver.pem", cp.workdir / "receiver.key"
        ca.cert_pem.write_to_path(str(ca_file))
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(cert_file), append=True)
        cert.private_key_pem.write_to_path(str(key_file))
        for ns in (NS_FLOOR, NS_DELIVERY, NS_MEMORY):
            cp.namespace(ns)

        receiver = Receiver(cert_file, key_file)
        progress(f"delivery: receiver (own process, pid {receiver.proc.pid}) on {receiver.base}")
        try:
            # ---- floors, on a quiet control plane, before the operator runs --------------------
            post_rates: dict[int, float] = {}
            for concurrency in POST_CONCURRENCIES:
                progress(f"delivery floor (c): bare httpx.AsyncClient, up to {POSTS:,} POSTs or {POST_SECONDS:g}s, "
                         f"concurrency {concurrency}")
                rate, failures, done = asyncio.run(_post_rate(receiver.base + "/floor", ca_file, POSTS, concurrency, POST_SECONDS))
                post_rates[concurrency] = rate
                if failures:
                    notes.append(f"floor (c): {failures} of {done:,} bare httpx POSTs (concurrency {concurrency}) did not get a 200.")
                progress(f"delivery floor (c): {rate:,.0f} POST/s ({done:,} POSTs)")
            best = max(post_rates, key=post_rates.__getitem__)
            post_rate = post_rates[best]
            capacity = asyncio.run(_aiohttp_rate(receiver.base + "/floor", ca_file, POSTS, 100))
            progress(f"delivery: receiver capacity (aiohttp client, concurrency 100): {capacity:,.0f} POST/s")
            receiver.take()

            progress(f"delivery floor (a): bare watcher, {LATENCY_EVENTS} IntegrationEvents at {PACE:g}/s")
            floor_lat = floor_watch_latency(cp)
            progress(f"delivery floor (a): p50 {common.ms(common.percentile(floor_lat, 50))}, "
                     f"p99 {common.ms(common.percentile(floor_lat, 99))}")

            progress(f"delivery floor (b): bare client creates {BURST_EVENTS} IntegrationEvents from {CREATORS} threads")
            _, start, end = create_burst(cp, NS_FLOOR, BURST_EVENTS)
            create_rate = BURST_EVENTS / (end - start)
            progress(f"delivery floor (b): {create_rate:,.0f} creates/s")
            cp.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, NS_FLOOR, EVENTS)

            progress("delivery floor (d): RSS of a bare python importing kopf, kubernetes, aiohttp")
            bare = common.bare_python_rss("import kopf, kubernetes, aiohttp, time; print('ready', flush=True); time.sleep(120)")
            progress(f"delivery floor (d): {common.mb(bare['VmHWM'])}")

            # ---- the operator ------------------------------------------------------------------
            operator = cp.operator(INORI_CA_BUNDLE=str(ca_file))
            operator.start()
            rss_start = operator.memory()

            for i in range(HOOKS):
                cp.create("webhooks", NS_DELIVERY, {
                    "apiVersion": common.API_VERSION, "kind": "Webhook", "metadata": {"name": f"hook-{i:02d}"},
                    "spec": {"url": f"{receiver.base}/hook-{i:02d}", "events": [EVENT_TYPE]},
                })

            def hooks_active() -> bool:
                items = cp.custom.list_namespaced_custom_object(GROUP, VERSION, NS_DELIVERY, "webhooks")["items"]
                return sum((o.get("status") or {}).get("phase") == "Active" for o in items) == HOOKS

            common.wait_for(hooks_active, timeout=60, what="10 Webhooks Active")
            progress(f"delivery: {HOOKS} Webhooks Active in {NS_DELIVERY}")

            # (1) latency
            progress(f"delivery (1): {WARMUP_EVENTS} warm-up events (not counted)")
            for i in common.paced(WARMUP_EVENTS, PACE):
                cp.create(EVENTS, NS_DELIVERY, event_body(i))
            _wait_deliveries(receiver, operator, WARMUP_EVENTS * HOOKS, 60)
            time.sleep(0.5)
            receiver.take()

            progress(f"delivery (1): {LATENCY_EVENTS} events at {PACE:g}/s, x{HOOKS} webhooks")
            sent: dict[str, float] = {}
            for i in common.paced(LATENCY_EVENTS, PACE):
                before = time.time()
                created = cp.create(EVENTS, NS_DELIVERY, event_body(i))
                sent[created["metadata"]["uid"]] = before
            expected = LATENCY_EVENTS * HOOKS
            failed_before, retries_before = _failed_attempts(operator), _pending_retries(operator)
            _, how = _wait_deliveries(receiver, operator, expected, 120, retries_before)
            time.sleep(0.5)  # a straggling duplicate would show up now
            first, dups = _unique(receiver.take(), set(sent))
            latencies = [arrived - sent[uid] for arrived, uid in first.values()]
            missing = expected - len(first)
            failed_attempts = _failed_attempts(operator) - failed_before
            if missing:
                retrying = _pending_retries(operator) - retries_before
                how += (f"; of the {missing:,} missing, {retrying:g} were scheduled for a retry and "
                        f"{failed_attempts:g} attempts had failed, so the rest were never attempted")
            p50 = common.percentile(latencies + [math.inf] * missing, 50)
            p99 = common.percentile(latencies + [math.inf] * missing, 99)
            f50, f99 = common.percentile(floor_lat, 50), common.percentile(floor_lat, 99)
            progress(f"delivery (1): {len(first)}/{expected} delivered ({how}), p50 {common.ms(p50)}, p99 {common.ms(p99)}, "
                     f"max arrived {common.ms(max(latencies, default=math.nan))}, failed attempts {failed_attempts:g}")
            rows.append(Row("delivery latency p50 (create -> receiver)", common.ms(p50),
                            f"{common.ms(f50)} (API server create -> watch)", common.times(p50, f50),
                            common.verdict("< 50 ms", p50 < 0.050)))
            rows.append(Row("delivery latency p99 (create -> receiver)", common.ms(p99),
                            f"{common.ms(f99)} (API server create -> watch)", common.times(p99, f99),
                            common.verdict("< 250 ms", p99 < 0.250)))
            notes.append(
                f"Latency: {LATENCY_EVENTS} IntegrationEvents created one at a time at {PACE:g}/s, each delivered to "
                f"{HOOKS} Webhooks; percentiles over all {expected:,} deliveries (first arrival per X-Inori-Delivery; "
                f"{dups} duplicate(s)), after {WARMUP_EVENTS} uncounted warm-up events"
                + (f"; {missing} had not arrived when the wait ended ({how}) and count as infinitely late (median of "
                   f"those that arrived: {common.ms(common.percentile(latencies, 50))})" if missing else "")
                + f". Failed attempts counted by the operator (the receiver answers every request with 200; a failed "
                f"attempt is retried after the default backoff, 45 minutes): {failed_attempts:g}. Floor: a bare "
                f"watcher in its own process, {LATENCY_EVENTS} objects at the same pace, before the operator started."
            )

            # (2) throughput: the median of BURSTS bursts (one 10-second burst on a shared VM is noisy)
            bursts = [_burst(cp, operator, receiver, run) for run in range(1, BURSTS + 1)]
            median = sorted(bursts, key=lambda b: b.throughput)[len(bursts) // 2]
            complete = all(b.complete for b in bursts)
            figure = common.per_s(median.throughput, " deliveries/s")
            if not complete:
                figure += " (some bursts did not deliver everything: see the notes)"
            rows.append(Row(f"delivery throughput (burst, first create -> last arrival; median of {BURSTS})", figure,
                            f"{common.per_s(post_rate, ' POST/s')} (bare httpx, same receiver)",
                            common.share(median.throughput, post_rate),
                            common.verdict(">= 1,000/s", complete and median.throughput >= 1000)))
            rows.append(Row("event creates during the burst (context)", common.per_s(median.create_rate, " creates/s"),
                            f"{common.per_s(create_rate, ' creates/s')} (bare client, no operator)",
                            common.share(median.create_rate, create_rate), "-"))
            notes.append(
                f"Throughput: {BURSTS} bursts, each of {BURST_EVENTS:,} IntegrationEvents created by {CREATORS} threads "
                f"x {HOOKS} Webhooks = {BURST_EVENTS * HOOKS:,} deliveries; the clock runs from the first create to the "
                f"last arrival, so it includes the creates. Bursts: "
                + "; ".join(b.summary() for b in bursts)
                + f". Floor: one pooled httpx.AsyncClient (the operator's HTTP client library) POSTing to the same "
                f"receiver for up to {POST_SECONDS:g}s: "
                + ", ".join(f"{r:,.0f}/s at concurrency {c}" for c, r in post_rates.items())
                + f"; the best one is the floor. The receiver itself takes {capacity:,.0f} POST/s from an aiohttp "
                f"client at concurrency 100, so it is not the limit."
            )

            # (3) memory
            rss_before = operator.memory()
            progress(f"delivery (3): creating {MEMORY_WEBHOOKS:,} Webhooks in {NS_MEMORY} from {CREATORS} threads")

            def webhook(i: int) -> None:
                cp.create("webhooks", NS_MEMORY, {
                    "apiVersion": common.API_VERSION, "kind": "Webhook", "metadata": {"name": f"mem-{i:05d}"},
                    "spec": {"url": f"{receiver.base}/memory/{i:05d}", "events": ["vendor.created"]},
                })
                if (i + 1) % 2500 == 0:
                    progress(f"delivery (3): {i + 1:,} Webhooks created")

            made = time.monotonic()
            with operator.profiled("webhooks"), ThreadPoolExecutor(CREATORS) as pool:
                list(pool.map(webhook, range(MEMORY_WEBHOOKS)))
            progress(f"delivery (3): created in {time.monotonic() - made:.0f}s; waiting for the operator")

            def reconciled() -> bool:
                operator.alive()
                return operator.metric("inori_webhooks", 'phase="Active"') >= HOOKS + MEMORY_WEBHOOKS

            common.wait_for(reconciled, timeout=300, interval=1.0, what='inori_webhooks{phase="Active"} >= 10010')
            progress("delivery (3): all reconciled in memory; waiting for their status writes")
            sample = [f"mem-{i:05d}" for i in range(MEMORY_WEBHOOKS - 20, MEMORY_WEBHOOKS)] + ["mem-00000"]

            def statuses_written() -> bool:
                return all(
                    (cp.custom.get_namespaced_custom_object(GROUP, VERSION, NS_MEMORY, "webhooks", n).get("status") or {})
                    .get("phase") == "Active" for n in sample
                )

            common.wait_for(statuses_written, timeout=180, interval=1.0, what="status of the last Webhooks")
            settled = time.monotonic() - made
            time.sleep(2)
            rss = operator.memory()
            progress(f"delivery (3): settled {settled:.0f}s after the first create; VmHWM {common.mb(rss['VmHWM'])}, "
                     f"VmRSS {common.mb(rss['VmRSS'])}")
            rows.append(Row(f"operator peak RSS with {MEMORY_WEBHOOKS:,} Webhooks (VmHWM)", common.mb(rss["VmHWM"]),
                            f"{common.mb(bare['VmHWM'])} (bare python + kopf, kubernetes, aiohttp)",
                            common.times(rss["VmHWM"], bare["VmHWM"]),
                            common.verdict("< 200 MB", rss["VmHWM"] < 200 * 2**20)))
            notes.append(
                f"Memory: VmHWM is the operator's lifetime peak, so it also covers the latency and burst runs above. "
                f"VmRSS was {common.mb(rss_start['VmRSS'])} after start, {common.mb(rss_before['VmRSS'])} before the "
                f"{MEMORY_WEBHOOKS:,} Webhooks (VmHWM {common.mb(rss_before['VmHWM'])}), {common.mb(rss['VmRSS'])} "
                f"once they were all Active ({settled:.0f}s from first create to last status written): "
                f"+{common.mb(rss['VmRSS'] - rss_before['VmRSS'])} for {MEMORY_WEBHOOKS:,} Webhooks, about "
                f"{(rss['VmRSS'] - rss_before['VmRSS']) / MEMORY_WEBHOOKS / 1024:.0f} KB each."
            )
            if operator.metric_failures:
                notes.append(f"Delivery run: {len(operator.metric_failures)} scrape(s) of the operator's /metrics did "
                             f"not answer 200; first: {operator.metric_failures[0]}")
            if receiver.aborted():
                notes.append(f"Delivery run: the receiver saw {receiver.aborted()} request(s) abandoned by the client "
                             f"before the body was complete (the operator cancelling an attempt at its timeout).")
            summary = operator.warning_summary()
            if summary:
                notes.append(f"Delivery run: the operator logged {summary}")
        finally:
            receiver.stop()
    return common.Result(rows, notes)
