"""`babyshield`: the on-call and developer command.

Each area registers its own subcommands (see COMMAND_MODULES); this module only
wires them together and turns every expected failure into a one-line message
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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


# Commands that talk to AWS (or the database): with nothing in the shell aimed at an
# account, they use the running local stack, and say so on stderr.
LOCAL_STACK_AWARE = frozenset({"db", "rotate", "secrets", "waf", "webhook"})


class _CurrentStderr:
    """Whatever sys.stderr is at each write (a caller or a test may swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _worth_showing(record: logging.LogRecord) -> bool:
    """Warnings, errors and audit lines (who did what, what a function decided)."""
    return (
        record.levelno >= logging.WARNING
        or hasattr(record, "audit")
        or hasattr(record, "audit_event")
    )


@contextmanager
def function_logs_on_stderr() -> Iterator[None]:
    """While a command runs function code in-process (the responder, a rotation, a
    block), that code's JSON log lines go to stderr: warnings, errors and audit
    lines only.

    stdout is the command's answer (a table, an on-call message, a --json
    document); the lines a Lambda sends to CloudWatch would bury it.
    BABYSHIELD_DEBUG=1 keeps every line (still on stderr).
    """
    from functions.shared.observability import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(_CurrentStderr())
    only = None if os.environ.get("BABYSHIELD_DEBUG") else _worth_showing
    if only is not None:
        handler.addFilter(only)
    try:
        yield
    finally:
        if only is not None:
            handler.removeFilter(only)
        if previous is not None:
            handler.setStream(previous)


def _serves(args: argparse.Namespace) -> bool:
    """`babyshield local` itself: a server whose log is its output."""
    return args.command == "local" and getattr(args, "local_command", None) is None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in LOCAL_STACK_AWARE:
            from ops.local_state import apply_local_environment

            apply_local_environment()
        if _serves(args):
            result = args.func(args)
        else:
            with function_logs_on_stderr():
                result = args.func(args)
    except CommandError as error:
        return fail(str(error), hint=error.hint)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # on-call gets one line, not a traceback
        if os.environ.get("BABYSHIELD_DEBUG"):
            raise
        return fail(
            f"unexpected failure: {type(error).__name__}: {error}",
            hint="rerun with BABYSHIELD_DEBUG=1 for the traceback, and report it",
        )
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
