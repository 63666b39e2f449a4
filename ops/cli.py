"""`babyshield`: the on-call and developer command.

Each area registers its own subcommands (see COMMAND_MODULES); this module only
wires them together and turns every expected failure into a one-line message
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ops.console import CommandError, fail

# Modules that expose `register(subparsers)`; each adds its commands and sets
# `func` on its parser. Imported lazily per call so `babyshield --help` is fast.
COMMAND_MODULES = [
    "ops.local",
    "ops.openapi",
    "ops.webhook",
    "ops.audit",
    "ops.security",
    "ops.db",
    "ops.waf",
    "ops.rotate",
    "ops.secrets",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="babyshield",
        description="Operate the BabyShield security platform: local stack, audit, "
        "rotation, WAF blocks, secrets and database migrations.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except CommandError as error:
        return fail(str(error), hint=error.hint)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
