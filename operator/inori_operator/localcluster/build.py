"""Build etcd, kube-apiserver, kubectl and helm from their official Go modules, once per version.

The binaries land in a cache outside the checkout (``~/.cache/inori-operator/controlplane``) so a
fresh clone, CI included, reuses them. ``k8s.io/kubernetes`` cannot be ``go install``-ed because
its go.mod replaces every staging module with a local path, so we generate a wrapper module that
requires it and pins each staging module to its published ``v0.Y.Z`` tag; the list of staging
modules is read from Kubernetes' own go.mod, never typed by hand.

Only the standard library is used: this runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.3"  # the 3.7 line that Kubernetes 1.37 pins in its go.mod
HELM_VERSION = "v4.3.2"

_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/k8s\.io/", re.MULTILINE)


class BuildError(RuntimeError):
    """A binary could not be built; the message says what to do."""


def cache_root() -> Path:
    """Where built binaries live: outside the checkout, shared by every clone on the machine."""
    explicit = os.environ.get("INORI_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "inori-operator" / "controlplane"


@dataclass(frozen=True)
class Binaries:
    """Paths of the four executables the local cluster and the tests use."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    helm: Path


def binaries(root: Path | None = None) -> Binaries:
    root = root or cache_root()
    kube = root / f"kubernetes-{KUBERNETES_VERSION}"
    return Binaries(
        etcd=root / f"etcd-{ETCD_VERSION}" / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        kubectl=kube / "kubectl",
        helm=root / f"helm-{HELM_VERSION}" / "helm",
    )


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """The ``k8s.io/*`` modules that Kubernetes' go.mod replaces with ``./staging`` paths."""
    return sorted(set(_STAGING_REPLACE.findall(kubernetes_go_mod)))


def staging_version(kubernetes_version: str) -> str:
    """Staging modules are tagged ``v0.Y.Z`` for Kubernetes ``v1.Y.Z``."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".")
    if major != "1":
        raise BuildError(f"unexpected Kubernetes version {kubernetes_version}")
    return f"v0.{minor}.{patch}"


def wrapper_go_mod(name: str, requires: dict[str, str], replaces: dict[str, str]) -> str:
    lines = [f"module {name}", "", "go 1.26", "", "require ("]
    lines += [f"\t{mod} {ver}" for mod, ver in sorted(requires.items())]
    lines += [")", ""]
    if replaces:
        lines.append("replace (")
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in sorted(replaces.items())]
        lines += [")", ""]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[controlplane] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "Go is not installed: install Go 1.26 or newer (https://go.dev/dl/) so the control plane "
            "can be built, or point KUBECONFIG at an existing cluster."
        )
    return go


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    _log("$ " + " ".join(cmd[:6]) + (" ..." if len(cmd) > 6 else ""))
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, text=True, capture_output=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:4])} failed in {cwd}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _build_module(
    *,
    go: str,
    workdir: Path,
    requires: dict[str, str],
    replaces: dict[str, str],
    packages: dict[str, str],
    out_dir: Path,
    ldflags: str = "",
    main_files: dict[str, str] | None = None,
) -> None:
    """Write a wrapper module, resolve it, and build each package into ``out_dir`` atomically."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(wrapper_go_mod("inori.local/build", requires, replaces))
    for rel, text in (main_files or {}).items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    _run([go, "mod", "download"], workdir, env)  # -mod=mod then records go.sum entries as it builds
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, pkg in packages.items():
        started = time.monotonic()
        _log(f"building {name} (this is the slow part: several minutes on 2 cores)")
        cmd = [go, "build", "-trimpath", "-o", str(staging / name)]
        if ldflags:
            cmd += ["-ldflags", ldflags]
        _run(cmd + [pkg], workdir, env)
        _log(f"built {name} in {time.monotonic() - started:.0f}s")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def build_kubernetes(go: str, out_dir: Path, work: Path) -> None:
    _log(f"fetching k8s.io/kubernetes {KUBERNETES_VERSION} go.mod")
    probe = work / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "go.mod").write_text("module probe\n\ngo 1.26\n")
    gomod = _run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], probe)
    match = re.search(r'"GoMod":\s*"([^"]+)"', gomod)
    if not match:
        raise BuildError("could not locate k8s.io/kubernetes go.mod in the module cache")
    modules = staging_modules(Path(match.group(1)).read_text())
    if not modules:
        raise BuildError("k8s.io/kubernetes go.mod lists no staging replacements; the build recipe needs updating")
    sv = staging_version(KUBERNETES_VERSION)
    _log(f"pinning {len(modules)} staging modules to {sv}")
    minor = KUBERNETES_VERSION.split(".")[1]
    ldflags = " ".join(
        f"-X {pkg}.{key}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in (("gitVersion", KUBERNETES_VERSION), ("gitMajor", "1"), ("gitMinor", minor),
                           ("gitTreeState", "clean"))
    ) + " -s -w"
    _build_module(
        go=go,
        workdir=work / "kubernetes",
        # Replace every staging module, but require only Kubernetes itself: a few staging modules
        # (the samples) are never published, and a replace of a module outside the graph is inert.
        requires={"k8s.io/kubernetes": KUBERNETES_VERSION},
        replaces={m: sv for m in modules},
        packages={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        out_dir=out_dir,
        ldflags=ldflags,
    )


def build_etcd(go: str, out_dir: Path, work: Path) -> None:
    main = 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n'
    _build_module(
        go=go,
        workdir=work / "etcd",
        requires={"go.etcd.io/etcd/server/v3": ETCD_VERSION},
        replaces={},
        packages={"etcd": "./cmd/etcd"},
        out_dir=out_dir,
        ldflags="-s -w",
        main_files={"cmd/etcd/main.go": main},
    )


def build_helm(go: str, out_dir: Path, work: Path) -> None:
    _build_module(
        go=go,
        workdir=work / "helm",
        requires={"helm.sh/helm/v4": HELM_VERSION},
        replaces={},
        packages={"helm": "helm.sh/helm/v4/cmd/helm"},
        out_dir=out_dir,
        ldflags=f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
    )


def ensure(root: Path | None = None) -> Binaries:
    """Build whatever is missing from the cache and return the binaries' paths."""
    root = root or cache_root()
    bins = binaries(root)
    todo = [
        (bins.etcd, build_etcd),
        (bins.kube_apiserver, build_kubernetes),
        (bins.kubectl, build_kubernetes),
        (bins.helm, build_helm),
    ]
    if all(path.exists() for path, _ in todo):
        return bins
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        _log(f"waiting for the build lock in {root}")
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent `make run` and `make test` build once
        go = _go()
        done: set[object] = set()
        for path, builder in todo:
            if path.exists() or builder in done:
                continue
            done.add(builder)
            with tempfile.TemporaryDirectory(prefix="inori-build-") as tmp:
                builder(go, path.parent, Path(tmp))
    _log(f"control plane binaries ready in {root}")
    return bins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-dir", action="store_true", help="print the directory holding kubectl and helm")
    args = parser.parse_args(argv)
    try:
        bins = ensure()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print_dir:
        print(bins.kubectl.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
