"""Console output shared by every `babyshield` command: errors, tables, JSON."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

# What a command that talks to AWS says when the shell has no credentials at all.
NO_CREDENTIALS = "no AWS credentials found"
NO_CREDENTIALS_HINT = "set AWS_PROFILE or run `aws sso login`"


class CommandError(Exception):
    """An expected failure: printed as one line with what to do next, exit code 1."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class UsageError(CommandError):
    """An argument the command refuses before doing anything: exit code 2, as for
    argparse's own refusals (a missing argument, an unknown option), so a script can
    tell "nothing was tried" from "it was tried and failed"."""

    exit_code = 2


def fail(message: str, *, hint: str | None = None, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"  next: {hint}", file=sys.stderr)
    return code


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table: readable in a terminal, greppable in a log."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def login_name() -> str | None:
    """Who runs the command ($LOGNAME, $USER, then the passwd entry), or None.

    A container running under an arbitrary uid has neither variable nor an entry,
    where getpass.getuser() raises instead of answering.
    """
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):
        return None


def cli_caller() -> str:
    """Who reads a secret through the CLI, for the secret-read audit line."""
    return f"babyshield-cli:{login_name() or f'uid-{os.getuid()}'}"


def is_http_url(url: str) -> bool:
    """An http(s) URL with a host and a valid port: checked before a command reads a
    secret or sends anything, so a typo is a usage error, not a failure halfway."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError:  # that, or an unclosed [IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
