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
from typing import Any

from ops.console import CommandError, cli_caller, fail

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


class _VersionAction(argparse.Action):
    """`--version`: the installed distribution's version (pyproject.toml), or "unknown"
    from a checkout that was never installed. Looked up only when asked: reading the
    installed metadata costs ~50 ms, which every other command would pay at start."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **_: Any):
        super().__init__(
            option_strings,
            dest=dest,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show the version and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("babyshield")
        except PackageNotFoundError:
            found = "unknown"
        print(f"{parser.prog} {found}")  # stdout, as argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="babyshield",
        description="Operate the BabyShield security platform: local stack, audit, "
        "rotation, WAF blocks, secrets and database migrations.",
    )
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


# Commands that talk to AWS (or the database): with nothing in the shell aimed at an
# account, they use the running local stack, and say so on stderr.
LOCAL_STACK_AWARE = frozenset({"db", "rotate", "secrets", "waf", "webhook"})


# Read by Powertools at every flush.
METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"


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


def show_every_log_line() -> None:
    """For the rest of this command, every log line of the code it runs (a --verbose
    flag): the filter goes; tracebacks stay out without BABYSHIELD_DEBUG."""
    from functions.shared.observability import logger

    logger.registered_handler.removeFilter(_worth_showing)


# psycopg_pool's own logger: a pool retrying a connection logs each attempt (the
# library's text, maybe more after the command answered), where the command reports
# the failure itself, once.
POOL_LOGGER = "psycopg.pool"


def _pool_errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _without_traceback(record: logging.LogRecord) -> bool:
    """Keep the line, drop its traceback: the command reports the failure itself, in
    one line (BABYSHIELD_DEBUG=1 keeps tracebacks)."""
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    return True


@contextmanager
def command_output_only() -> Iterator[None]:
    """While a command runs function code in-process (the responder, a rotation, a
    block), stdout carries the command's answer only (a table, an on-call message,
    a --json document), not what a Lambda sends to CloudWatch:

    - the code's JSON log lines go to stderr, warnings, errors and audit lines only,
      without tracebacks;
    - the database pool's retry lines (psycopg.pool, below ERROR) are not shown;
    - its EMF metric blobs are not written (there is no CloudWatch to read them).

    BABYSHIELD_DEBUG=1 keeps every log line (still on stderr) and the metrics.
    """
    from functions.shared.observability import logger, metrics

    debug = bool(os.environ.get("BABYSHIELD_DEBUG"))
    handler = logger.registered_handler
    pool_logger = logging.getLogger(POOL_LOGGER)
    previous = None
    if isinstance(handler, logging.StreamHandler):
        previous = handler.setStream(_CurrentStderr())
        if not debug:
            handler.addFilter(_worth_showing)
            handler.addFilter(_without_traceback)
    if not debug:
        pool_logger.addFilter(_pool_errors_only)
    metrics_setting = os.environ.get(METRICS_DISABLED)
    if not debug:
        os.environ[METRICS_DISABLED] = "true"
    try:
        yield
    finally:
        if metrics_setting is None:
            os.environ.pop(METRICS_DISABLED, None)
        else:
            os.environ[METRICS_DISABLED] = metrics_setting
        # Disabled metrics stay in the set; none of this command's may leak into
        # a later flush.
        metrics.clear_metrics()
        handler.removeFilter(_worth_showing)
        handler.removeFilter(_without_traceback)
        pool_logger.removeFilter(_pool_errors_only)
        if previous is not None and isinstance(handler, logging.StreamHandler):
            handler.setStream(previous)


@contextmanager
def secrets_read_by(reader: str) -> Iterator[None]:
    """Every secret value the command's in-process code reads, a database tier's login
    for `secrets --api-keys` or the admin login for `db migrate` alike, is audited as
    `reader`'s read, as the command's own reads are, not as a function's."""
    from functions.shared.db.credentials import name_secret_reader

    previous = name_secret_reader(reader)
    try:
        yield
    finally:
        name_secret_reader(previous)


def _uses_local_stack(args: argparse.Namespace) -> bool:
    """Whether to point this command at the running local stack. `db` given a database
    (--database-url or DATABASE_URL in the shell) keeps it: the stack's environment
    would replace DATABASE_URL, and `db migrate` would migrate the local database while
    on-call believes the named one is up to date."""
    if args.command not in LOCAL_STACK_AWARE:
        return False
    if args.command == "db":
        return not (getattr(args, "database_url", None) or os.environ.get("DATABASE_URL"))
    return True


def _adopt_the_shells_region() -> None:
    """The region the shell names the way AWS tools read it, for the settings to use.

    Lambda always sets AWS_REGION, and so does the local stack; on-call's shell often
    names its region with AWS_DEFAULT_REGION or the profile's `region` instead. The
    settings read AWS_REGION only (default us-east-1), so without this a command would
    go to us-east-1 whatever region the shell points at.
    """
    if os.environ.get("AWS_REGION"):
        return
    import botocore.session

    from functions.shared.settings import get_settings

    try:
        region = botocore.session.Session().get_config_variable("region")
    except Exception:  # noqa: BLE001 - an unreadable profile: the settings' default stands
        return
    if isinstance(region, str) and region:
        os.environ["AWS_REGION"] = region
        get_settings.cache_clear()


def _serves(args: argparse.Namespace) -> bool:
    """`babyshield local` itself: a server whose log is its output."""
    return args.command == "local" and getattr(args, "local_command", None) is None


def _bad_setting(error: Exception) -> str | None:
    """One line naming the environment variable behind an invalid setting, instead of
    pydantic's multi-line dump; None for any other error."""
    from pydantic import ValidationError

    from functions.shared.settings import ENVIRONMENT_VARIABLES, Settings

    if not isinstance(error, ValidationError) or error.title != Settings.__name__:
        return None
    variables = {field: variable for variable, field in ENVIRONMENT_VARIABLES.items()}
    problems = error.errors()
    first = problems[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    variable = variables.get(field, field.upper())
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"environment variable {variable} is invalid: {message}{more}"


# What a Ctrl-C halfway through a change leaves, and how to see and finish it. Commands
# that only read need no line; `rotate` reports its own interruptions.
_WAF_INTERRUPTED = (
    "the change may have been made in part (the block registry first, then the WAF IP "
    "sets): `babyshield waf list --all` shows what the registry holds, and repeating "
    "the command is safe (it syncs the IP sets again)"
)
_INTERRUPTED = {
    ("waf", "block"): _WAF_INTERRUPTED,
    ("waf", "unblock"): _WAF_INTERRUPTED,
    ("db", "migrate"): "each migration file is applied whole or not at all: "
    "`babyshield db migrate` again applies what is left",
}


def _interrupted(args: argparse.Namespace) -> str | None:
    action = getattr(args, "waf_action", None) or getattr(args, "db_command", None)
    return _INTERRUPTED.get((args.command, action or ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if _uses_local_stack(args):
            from ops.local_state import apply_local_environment

            apply_local_environment()
        _adopt_the_shells_region()
        if _serves(args):
            result = args.func(args)
        else:
            with command_output_only(), secrets_read_by(cli_caller()):
                result = args.func(args)
    except CommandError as error:
        return fail(str(error), hint=error.hint, code=error.exit_code)
    except KeyboardInterrupt:
        said = _interrupted(args)
        if said:
            print(f"interrupted: {said}", file=sys.stderr)
        return 130
    except Exception as error:  # on-call gets one line, not a traceback
        if os.environ.get("BABYSHIELD_DEBUG"):
            raise
        setting = _bad_setting(error)
        if setting:
            return fail(setting, hint="correct that environment variable, or unset it")
        # The type only: a library's message may quote what it was given (a header
        # value, a connection string); the traceback under BABYSHIELD_DEBUG has it all.
        return fail(
            f"unexpected failure: {type(error).__name__}",
            hint="rerun with BABYSHIELD_DEBUG=1 for the traceback, and report it",
        )
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
