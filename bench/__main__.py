"""``python -m bench [--only delivery|apikeys]``: run the benchmarks, print and save the table."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from . import common

BENCHMARKS = {
    "delivery": 420,  # seconds each may take before it is stopped
    "apikeys": 300,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run just this benchmark")
    args = parser.parse_args(argv)
    selected = [args.only] if args.only else list(BENCHMARKS)

    started = time.monotonic()
    head = common.header()
    fingerprint = common.code_fingerprint()
    common.progress(f"bench: {', '.join(selected)} | {head}")
    rows: list[common.Row] = []
    notes: list[str] = []
    failed = False
    for name in selected:
        common.progress(f"bench: === {name} ===")
        began = time.monotonic()
        try:
            with common.time_limit(BENCHMARKS[name], name):
                result = importlib.import_module(f"bench.{name}").run()
        except BaseException as exc:  # noqa: BLE001 - report it in the table, run the rest
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed = True
            traceback.print_exc()
            rows.append(common.Row(name, f"FAILED: {type(exc).__name__}: {str(exc)[:200]}", "-", "-", "-"))
            continue
        rows += result.rows
        notes += result.notes
        notes.append(f"{name}: {time.monotonic() - began:.0f}s including control-plane start and stop.")

    if common.code_fingerprint() != fingerprint:
        notes.insert(0, f"WARNING: the operator's code changed during this run ({fingerprint} -> "
                        f"{common.code_fingerprint()}); the figures may mix two versions.")
        common.progress("bench: WARNING: the checkout changed during the run")
    text = common.render(head, rows, notes, time.monotonic() - started)
    path = common.write_results(text)
    print()
    print(text, flush=True)
    common.progress(f"bench: written to {path.relative_to(common.ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
