"""``inori-operator``: run the operator, or run it on an embedded local control plane.

    inori-operator run            the operator, against the cluster of KUBECONFIG / in-cluster
    inori-operator dev            build + start a local control plane, install CRDs, run the operator
    inori-operator controlplane   only build the control-plane binaries (cached)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop
from pydantic import ValidationError

from . import __version__, logs
from .settings import Settings, describe_error

log = logging.getLogger("inori_operator")

REPO_ROOT = Path(__file__).resolve().parents[2]
PEERING = "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata:\n  name: {name}\n"


def _settings() -> Settings:
    try:
        return Settings()
    except (ValidationError, ValueError) as exc:
        print(f"inori-operator: {describe_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


async def _serve(settings: Settings) -> None:
    from .app import Operator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Operator(settings).run(stop_flag=stop)


def run(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    log.info("inori-operator %s starting (namespace %s)", __version__, settings.namespace)
    uvloop.run(_serve(settings))  # what kopf's own CLI does when uvloop is installed
    return 0


def dev(crds: Path) -> int:
    """``make run``: a cluster if none is configured, then the operator in the foreground."""
    if os.environ.get("KUBECONFIG") or Path.home().joinpath(".kube", "config").exists():
        print("inori-operator: using the cluster from your kubeconfig", file=sys.stderr)
        return run(_settings())
    from .localcluster import build, cluster

    try:
        binaries = build.ensure()
    except build.BuildError as exc:
        print(f"inori-operator: {exc}", file=sys.stderr)
        return 1
    settings = _settings()
    with cluster.LocalCluster(binaries) as local:
        local.install_crds(crds)
        local.kubectl("create", "namespace", settings.namespace, check=False)
        local.kubectl("create", "namespace", "team-a", check=False)
        local.kubectl("apply", "-f", "-", input=PEERING.format(name=settings.peering_name))
        stable = REPO_ROOT / ".run" / "kubeconfig"
        stable.parent.mkdir(exist_ok=True)
        stable.write_bytes(local.kubeconfig.read_bytes())
        stable.chmod(0o600)
        os.environ["KUBECONFIG"] = str(local.kubeconfig)
        print(
            "\nLocal control plane ready. In another terminal:\n\n"
            f"  export KUBECONFIG={stable} PATH={binaries.kubectl.parent}:$PATH\n"
            "  kubectl apply -n team-a -f examples/ && kubectl get webhooks -n team-a\n\n"
            f"HTTP API on http://127.0.0.1:{settings.http_port}. Ctrl-C stops everything.\n",
            file=sys.stderr,
            flush=True,
        )
        try:
            return run(settings)
        except KeyboardInterrupt:
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inori-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the operator against the configured cluster")
    dev_parser = sub.add_parser("dev", help="run on an embedded local control plane unless a cluster is configured")
    dev_parser.add_argument("--crds", type=Path, default=REPO_ROOT / "crds")
    sub.add_parser("controlplane", help="build the local control-plane binaries into the cache")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(_settings())
    if args.command == "dev":
        return dev(args.crds)
    from .localcluster import build

    return build.main([])


if __name__ == "__main__":
    raise SystemExit(main())
