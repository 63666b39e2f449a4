"""`make bench`: run every benchmark (or the ones named) and write benchmarks/results/*.json.

A benchmark is a module `benchmarks/<name>.py` with `run() -> Result`; list it
in BENCHMARKS so the order is deliberate (cheap ones first).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks.common import ROOT

BENCHMARKS = [
    "validator",
    "coldstart",
    "package",
    "warm",
    "memory",
    "db",
    "responder",
    "auth",
    "rotation",
    "http",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = args.names or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        result = module.run()
        path = result.write()
        result.print_table()
        print(f"  -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        if not all(result.targets.values()):
            failed.append(name)
    if failed:
        print(f"\ntargets not met: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
