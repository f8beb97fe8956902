"""API key benchmark: verification throughput and latency, revocation propagation, index memory.

One local control plane; the operator as a child process.

- The verifier's index is filled with 10,000 active keys by creating their hash Secrets directly in
  the operator's namespace, exactly as ``ApiKeyController`` writes them (labels, annotations and
  data built with the operator's own constants and ``keys.hash_key``); the verifier reads only
  these Secrets, so this exercises the same index without 10,000 ApiKey reconciles.
- ``hey`` (Go) loads ``GET /v1/verify`` with a valid key; the floor is a bare aiohttp endpoint in
  its own process that answers 200 with the same body and headers, loaded with identical settings.
- Revocation: 100 real ApiKeys issued by the operator; each is patched ``spec.revoked: true`` and
  ``/v1/verify`` is polled every ~2 ms until it answers 401. The floor is the same two-hop chain
  done by a bare client: patch an object, a watcher sees it and deletes a Secret, a second watcher
  sees the Secret deleted.
- Memory: the operator's VmRSS before seeding and once the index holds all 10,000 keys; the floor
  is the growth of a bare Python process that builds the same 10,000 ``KeyEntry`` objects in dicts.
"""

from __future__ import annotations

import asyncio
import base64
import math
import multiprocessing as mp
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import common
from .common import GROUP, OPERATOR_NAMESPACE, VERSION, Row, progress

SEEDED = 10_000
SEED_NAMESPACE = "bench-seed"  # the (fictional) namespace the seeded keys claim to belong to
NS_KEYS = "bench-keys"
NS_FLOOR = "bench-floor-revoke"
CREATORS = 8
HEY_SECONDS = 10
HEY_CONCURRENCY = 50
HEY_SERIAL_SECONDS = 5  # the same load at concurrency 1: service time without queueing
REVOCATIONS = 100
POLL_INTERVAL = 0.002
REVOKE_TIMEOUT = 5.0


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def hash_secret(index: int, key: str) -> dict[str, Any]:
    """The hash Secret ``ApiKeyController._hash_secret`` would write for an ApiKey with this key."""
    from inori_operator import apikeys, keys
    from inori_operator import keyindex as ki

    uid = str(uuid.uuid4())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": False,
        "metadata": {
            "name": apikeys.hash_secret_name(uid),
            "namespace": OPERATOR_NAMESPACE,
            "labels": {ki.MANAGED_BY: ki.MANAGER, ki.COMPONENT: ki.HASH_COMPONENT, ki.APIKEY_UID: uid},
            "annotations": {ki.APIKEY_NAMESPACE: SEED_NAMESPACE, ki.APIKEY_NAME: f"seed-{index:05d}",
                            ki.APIKEY_LABEL: f"Seed {index}"},
        },
        "data": {ki.HASH_KEY: _b64(keys.hash_key(key)), "prefix": _b64(keys.display_prefix(key))},
    }


# -- the floor server (its own process) ------------------------------------------------------------

def _floor_server_main(conn: Any) -> None:
    common.die_with_parent()
    from aiohttp import web

    body = {"valid": True, "apiKey": {"namespace": SEED_NAMESPACE, "name": "seed-00000", "label": "Seed 0"}}
    headers = {"X-Inori-Key-Namespace": SEED_NAMESPACE, "X-Inori-Key-Name": "seed-00000"}

    async def verify(request: web.Request) -> web.Response:
        return web.json_response(body, headers=headers)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/v1/verify", verify)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        conn.send(sock.getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await runner.cleanup()

    asyncio.run(main())


class FloorServer:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_floor_server_main, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the floor server did not start")
        self.url = f"http://127.0.0.1:{self.conn.recv()}/v1/verify"

    def stop(self) -> None:
        common.stop_child(self.conn, self.proc)


# -- revocation floor: patch -> watch -> delete Secret -> watch, with a bare client ---------------

def revocation_floor(cp: common.ControlPlane, count: int) -> list[float]:
    import kubernetes

    cp.namespace(NS_FLOOR)
    names = ["warm", *(f"k{i:03d}" for i in range(count))]
    for name in names:
        cp.core.create_namespaced_config_map(NS_FLOOR, {"metadata": {"name": f"key-{name}"}, "data": {"revoked": "false"}})
        cp.core.create_namespaced_secret(NS_FLOOR, {"metadata": {"name": f"hash-{name}"}, "stringData": {"sha256": "x"}})
    cm_version = cp.core.list_namespaced_config_map(NS_FLOOR).metadata.resource_version
    secret_version = cp.core.list_namespaced_secret(NS_FLOOR).metadata.resource_version
    gone = {name: threading.Event() for name in names}
    seen_at: dict[str, float] = {}
    watches = [kubernetes.watch.Watch(), kubernetes.watch.Watch()]

    def reactor() -> None:  # the "controller": a revoked key's hash Secret is deleted
        try:
            for event in watches[0].stream(cp.core.list_namespaced_config_map, NS_FLOOR, resource_version=cm_version,
                                           timeout_seconds=120):
                obj = event["object"]
                if event["type"] == "MODIFIED" and (obj.data or {}).get("revoked") == "true":
                    name = obj.metadata.name.removeprefix("key-")
                    cp.core.delete_namespaced_secret(f"hash-{name}", NS_FLOOR)
        except Exception:  # noqa: BLE001 - the control plane stops under us at the end
            pass

    def index() -> None:  # the "verifier": the hash Secret's deletion arrives
        try:
            for event in watches[1].stream(cp.core.list_namespaced_secret, NS_FLOOR, resource_version=secret_version,
                                           timeout_seconds=120):
                if event["type"] == "DELETED":
                    name = event["object"].metadata.name.removeprefix("hash-")
                    seen_at[name] = time.time()
                    if name in gone:
                        gone[name].set()
        except Exception:  # noqa: BLE001
            pass

    threads = [threading.Thread(target=reactor, daemon=True), threading.Thread(target=index, daemon=True)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    try:
        for name in names:
            started = time.time()
            cp.core.patch_namespaced_config_map(f"key-{name}", NS_FLOOR, {"data": {"revoked": "true"}})
            if not gone[name].wait(30 if name == "warm" else REVOKE_TIMEOUT):
                latencies.append(math.inf)
                continue
            if name != "warm":
                latencies.append(seen_at[name] - started)
    finally:
        for watch in watches:
            watch.stop()
    return latencies


# -- the benchmark ---------------------------------------------------------------------------------

def run() -> common.Result:
    import httpx

    from inori_operator import keys

    rows: list[Row] = []
    notes: list[str] = []
    common.ensure_hey()
    with common.ControlPlane() as cp:
        cp.namespace(NS_KEYS)
        operator = cp.operator()
        operator.start()
        with httpx.Client(base_url=operator.base_url, timeout=5) as http:
            for _ in range(20):  # warm the HTTP path before the "before" reading
                http.get("/v1/verify", headers={"Authorization": "Bearer " + keys.generate()})
        time.sleep(1)
        before = operator.memory()
        progress(f"apikeys: operator VmRSS before seeding {common.mb(before['VmRSS'])}")

        # ---- seed the index ----------------------------------------------------------------------
        progress(f"apikeys: generating {SEEDED:,} keys and creating their hash Secrets in {OPERATOR_NAMESPACE} "
                 f"from {CREATORS} threads")
        seeded = [keys.generate() for _ in range(SEEDED)]

        def seed(i: int) -> None:
            response = cp.core.create_namespaced_secret(OPERATOR_NAMESPACE, hash_secret(i, seeded[i]), _preload_content=False)
            response.read()  # drain before the connection goes back to the pool
            response.release_conn()
            if (i + 1) % 2500 == 0:
                progress(f"apikeys: {i + 1:,} hash Secrets created")

        started = time.monotonic()
        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(seed, range(SEEDED)))
        created = time.monotonic() - started
        common.wait_for(lambda: operator.alive() and operator.readyz().get("apiKeys", 0) >= SEEDED, timeout=180,
                        interval=0.5, what=f"/readyz apiKeys >= {SEEDED}")
        indexed = time.monotonic() - started
        progress(f"apikeys: created in {created:.0f}s; /readyz reports {operator.readyz().get('apiKeys')} keys "
                 f"{indexed:.0f}s after the first create")
        time.sleep(2)
        after = operator.memory()
        floor_mem = common.bare_python_rss(
            "import hashlib, uuid\n"
            "from inori_operator.keyindex import KeyEntry\n"
            "def rss():\n"
            "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) * 1024\n"
            "before = rss(); by_digest = {}; by_secret = {}\n"
            f"for i in range({SEEDED}):\n"
            "    d = hashlib.sha256(uuid.uuid4().bytes).hexdigest()\n"
            f"    by_digest[d] = KeyEntry('{SEED_NAMESPACE}', f'seed-{{i:05d}}', str(uuid.uuid4()), f'Seed {{i}}', None, d)\n"
            "    by_secret['apikey-' + str(uuid.uuid4())] = d\n"
            "print('ready', rss() - before, flush=True)\n"
            "import time; time.sleep(120)\n"
        )
        floor_growth = int(str(floor_mem["_stdout"]).split()[1])
        growth = after["VmRSS"] - before["VmRSS"]
        progress(f"apikeys: operator VmRSS {common.mb(before['VmRSS'])} -> {common.mb(after['VmRSS'])} "
                 f"(+{common.mb(growth)}); bare dict of {SEEDED:,} KeyEntry: +{common.mb(floor_growth)}")

        # ---- verification load -------------------------------------------------------------------
        key = seeded[SEEDED // 2]
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=5) as http:
            answer = http.get(operator.base_url + "/v1/verify", headers=auth)
        if answer.status_code != 200:
            raise RuntimeError(f"a seeded key does not verify: {answer.status_code} {answer.text[:200]}")

        floor_server = FloorServer()
        try:
            progress(f"apikeys floor: hey -z {HEY_SECONDS}s -c {HEY_CONCURRENCY} on a bare aiohttp endpoint")
            floor = common.run_hey(floor_server.url, seconds=HEY_SECONDS, concurrency=HEY_CONCURRENCY, headers=auth)
            progress(f"apikeys floor: {floor.requests_per_second:,.0f} req/s, p50 {common.ms(floor.p50)}, p99 {common.ms(floor.p99)}")
            floor_serial = common.run_hey(floor_server.url, seconds=HEY_SERIAL_SECONDS, concurrency=1, headers=auth)
        finally:
            floor_server.stop()
        progress(f"apikeys: hey -z {HEY_SECONDS}s -c {HEY_CONCURRENCY} on the operator's /v1/verify")
        op = common.run_hey(operator.base_url + "/v1/verify", seconds=HEY_SECONDS, concurrency=HEY_CONCURRENCY, headers=auth)
        progress(f"apikeys: {op.requests_per_second:,.0f} req/s, p50 {common.ms(op.p50)}, p99 {common.ms(op.p99)}, codes {op.codes}")
        op_serial = common.run_hey(operator.base_url + "/v1/verify", seconds=HEY_SERIAL_SECONDS, concurrency=1, headers=auth)
        non_200 = op.total - op.codes.get(200, 0)

        ratio = op.requests_per_second / floor.requests_per_second
        rows.append(Row(f"verify throughput (hey -c {HEY_CONCURRENCY}, {SEEDED:,} keys indexed)",
                        common.per_s(op.requests_per_second, " req/s"),
                        f"{common.per_s(floor.requests_per_second, ' req/s')} (bare aiohttp 200)",
                        common.share(op.requests_per_second, floor.requests_per_second),
                        common.verdict(">= 70% of floor", ratio >= 0.70 and non_200 == 0)))
        rows.append(Row(f"verify latency p50 (hey -c {HEY_CONCURRENCY})", common.ms(op.p50), common.ms(floor.p50),
                        common.times(op.p50, floor.p50), "-"))
        rows.append(Row(f"verify latency p99 (hey -c {HEY_CONCURRENCY})", common.ms(op.p99), common.ms(floor.p99),
                        common.times(op.p99, floor.p99), common.verdict("< 5 ms", op.p99 < 0.005)))
        rows.append(Row("verify latency p50 / p99 (hey -c 1, context)", f"{common.ms(op_serial.p50)} / {common.ms(op_serial.p99)}",
                        f"{common.ms(floor_serial.p50)} / {common.ms(floor_serial.p99)}",
                        f"{common.times(op_serial.p50, floor_serial.p50)} / {common.times(op_serial.p99, floor_serial.p99)}", "-"))
        notes.append(
            f"Verify: the {SEEDED:,} keys were seeded by creating their hash Secrets directly in {OPERATOR_NAMESPACE}, "
            f"exactly as the ApiKey controller writes them (the verifier only reads these Secrets); no ApiKey objects "
            f"exist for them. hey {common.HEY_MODULE.split('@')[1]}, -z {HEY_SECONDS}s -c {HEY_CONCURRENCY}, keep-alive, one "
            f"valid key: operator {op.total:,} requests ({non_200} not 200"
            + (f"; errors: {op.errors[:200]}" if op.errors else "") + f"), floor {floor.total:,}. The floor is a bare "
            f"aiohttp endpoint in its own process answering 200 with the same JSON body and headers. With a closed-loop "
            f"load of {HEY_CONCURRENCY} connections on {len(__import__('os').sched_getaffinity(0))} cores, latency is "
            f"mostly queueing (p50 ~ concurrency / throughput), for the floor as well; the -c 1 row shows service time."
        )

        # ---- revocation --------------------------------------------------------------------------
        progress(f"apikeys: creating {REVOCATIONS} ApiKeys in {NS_KEYS}")
        names = [f"rev-{i:03d}" for i in range(REVOCATIONS)]
        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(lambda n: cp.create("apikeys", NS_KEYS, {
                "apiVersion": common.API_VERSION, "kind": "ApiKey", "metadata": {"name": n}, "spec": {"label": n.title()},
            }), names))

        def all_active() -> bool:
            operator.alive()
            items = cp.custom.list_namespaced_custom_object(GROUP, VERSION, NS_KEYS, "apikeys")["items"]
            return sum((o.get("status") or {}).get("phase") == "Active" for o in items) == REVOCATIONS

        common.wait_for(all_active, timeout=120, interval=0.5, what=f"{REVOCATIONS} ApiKeys Active")
        plaintexts = {n: base64.b64decode(cp.core.read_namespaced_secret(f"{n}-api-key", NS_KEYS).data["api-key"]).decode()
                      for n in names}
        progress(f"apikeys: {REVOCATIONS} ApiKeys Active; revoking each and polling /v1/verify every {POLL_INTERVAL * 1000:g} ms")
        revocations: list[float] = []
        polls = 0
        with httpx.Client(base_url=operator.base_url, timeout=5) as http:
            for name in names:
                headers = {"Authorization": f"Bearer {plaintexts[name]}"}
                common.wait_for(lambda: http.get("/v1/verify", headers=headers).status_code == 200, timeout=10,
                                interval=0.05, what=f"{name} verifies before revocation")
                started = time.time()
                cp.patch("apikeys", NS_KEYS, name, {"spec": {"revoked": True}})
                refused = math.inf
                while time.time() - started < REVOKE_TIMEOUT:
                    polls += 1
                    if http.get("/v1/verify", headers=headers).status_code == 401:
                        refused = time.time() - started
                        break
                    time.sleep(POLL_INTERVAL)
                revocations.append(refused)
        r50, r99 = common.percentile(revocations, 50), common.percentile(revocations, 99)
        progress(f"apikeys: revocation p50 {common.ms(r50)}, p99 {common.ms(r99)}, max {common.ms(max(revocations))}")

        progress(f"apikeys floor: bare patch -> watch -> delete Secret -> watch chain, {REVOCATIONS} times")
        chain = revocation_floor(cp, REVOCATIONS)
        c50, c99 = common.percentile(chain, 50), common.percentile(chain, 99)
        progress(f"apikeys floor: p50 {common.ms(c50)}, p99 {common.ms(c99)}")
        rows.append(Row("revocation p50 (patch -> first 401)", common.ms(r50), f"{common.ms(c50)} (bare 2-hop chain)",
                        common.times(r50, c50), "-"))
        rows.append(Row("revocation p99 (patch -> first 401)", common.ms(r99), f"{common.ms(c99)} (bare 2-hop chain)",
                        common.times(r99, c99), common.verdict("< 250 ms", r99 < 0.250)))
        notes.append(
            f"Revocation: {REVOCATIONS} ApiKeys issued by the operator, revoked one at a time (merge patch "
            f"spec.revoked=true), the clock starting just before the patch request; /v1/verify polled over one "
            f"keep-alive connection every ~{POLL_INTERVAL * 1000:g} ms ({polls:,} polls in all; "
            f"{sum(math.isinf(r) for r in revocations)} not refused within {REVOKE_TIMEOUT:g}s). Floor: the same path "
            f"with a bare client: patch a ConfigMap, a watcher sees it and deletes a Secret, a second watcher sees "
            f"the deletion (the operator's minimum: ApiKey watch -> delete hash Secret -> index watch)."
        )

        rows.append(Row(f"memory per {SEEDED:,} keys (VmRSS growth)", f"+{common.mb(growth)} "
                        f"({common.mb(before['VmRSS'])} -> {common.mb(after['VmRSS'])})",
                        f"+{common.mb(floor_growth)} (bare dicts of KeyEntry)", common.times(growth, floor_growth), "-"))
        notes.append(
            f"Index memory: operator VmRSS before creating the {SEEDED:,} hash Secrets and 2s after /readyz reported "
            f"them all ({created:.0f}s to create, {indexed:.0f}s until indexed). The growth includes whatever the "
            f"operator keeps per Secret besides the index (its cluster-wide Secret watch sees these too). Floor: a "
            f"bare Python process building the same {SEEDED:,} KeyEntry objects in two dicts."
        )
        if operator.metric_failures:
            notes.append(f"API key run: {len(operator.metric_failures)} /metrics scrape(s) did not answer 200.")
        summary = operator.warning_summary()
        if summary:
            notes.append(f"API key run: the operator logged {summary}")
    return common.Result(rows, notes)
