"""`babyshield local`: the platform on this machine (what `make run` runs).

`babyshield local` starts the local stack (ops/local_stack.py) and serves until
Ctrl-C; `babyshield local alarm NAME` fires a CloudWatch alarm's EventBridge
event into the real responder, against the running stack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from typing import Any

from functions.shared import names
from ops.console import CommandError, UsageError

DEFAULT_PORT = 8080
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
MAX_PORT = 65535

# The alarms the responder acts on (functions/shared/names.py), by short name.
RESPONDER_ALARMS = {
    name.removeprefix(f"{names.PREFIX}-"): name for name in names.RESPONDER_ALARM_KINDS
}
# Its offenders are the keys WAF's rate-based rule is limiting, read from the WebACL
# (GetRateBasedStatementManagedKeys). The local stack has no WebACL (the local edge
# applies the rate rule in its own process) and moto lacks that call.
NOT_SIMULATED = {
    names.ALARM_WAF_RATE: (
        "its offenders come from the WebACL's rate rule, and the local stack has no "
        "WebACL (the local edge applies the rate rule itself; moto has no "
        "GetRateBasedStatementManagedKeys)"
    )
}


def _port(text: str) -> int:
    """--port: checked by the parser, before anything starts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"port {value} is out of range: use 0 to {MAX_PORT} (0 picks a free one)"
        )
    return value


def _alarm_name(text: str) -> str:
    """A responder alarm, by short name (`waf-blocked-requests`) or full name."""
    short = text.removeprefix(f"{names.PREFIX}-")
    if short not in RESPONDER_ALARMS:
        raise argparse.ArgumentTypeError(
            f"unknown alarm {text!r}; the responder acts on: {', '.join(RESPONDER_ALARMS)}"
        )
    return RESPONDER_ALARMS[short]


def _int_from_environment(name: str, default: int, *, low: int, high: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError as exc:
        raise CommandError(
            f"{name} must be a number, got {raw!r}", hint=f"export {name}={default}"
        ) from exc
    if not low <= value <= high:
        raise CommandError(
            f"{name} out of range: {value}", hint=f"use a value from {low} to {high}"
        )
    return value


def banner(state: dict[str, Any]) -> str:
    api = state["api_url"]
    user = next(u for u in state["users"] if u["role"] == "user")
    admin = next(u for u in state["users"] if u["role"] == "admin")
    user_key = next(
        k["key"]
        for k in state["api_keys"]
        if k["purpose"] == "demo" and k["owner"] == user["email"]
    )
    admin_key = next(k["key"] for k in state["api_keys"] if k["owner"] == admin["email"])
    login = (
        f"curl -s -X POST {api}/auth/login -H 'Content-Type: application/json' "
        f'-d \'{{"email":"{user["email"]}","password":"{user["password"]}"}}\''
    )
    admin_login = (
        f"curl -s -X POST {api}/auth/login -H 'Content-Type: application/json' "
        f'-d \'{{"email":"{admin["email"]}","password":"{admin["password"]}"}}\''
    )
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    lines = [
        "",
        f"BabyShield local stack is up: API {api}",
        f"  AWS (moto) {state['aws_endpoint_url']}   database: {state['database']}",
        "  state for scripts: .babyshield/local.json",
        "",
        "Demo accounts",
        f"  user   {user['email']} / {user['password']}   API key {user_key}",
        f"  admin  {admin['email']} / {admin['password']}   API key {admin_key}",
        "",
        "Try it (copy-paste)",
        f"  curl -i {api}/health",
        f"  curl -s '{api}/recalls?q=crib' -H 'X-API-Key: {user_key}'",
        f"  TOKEN=$({login} | {extract})",
        f'  curl -s {api}/me/subscriptions -H "Authorization: Bearer $TOKEN"',
        f'  curl -s -X POST {api}/me/subscriptions -H "Authorization: Bearer $TOKEN" '
        "-H 'Content-Type: application/json' -d '{\"product\":\"Travel crib\"}'",
        f"  ADMIN_TOKEN=$({admin_login} | {extract})",
        f"  curl -s {api}/admin/users -H 'X-API-Key: {admin_key}' "
        '-H "Authorization: Bearer $ADMIN_TOKEN"',
        f"  .venv/bin/babyshield webhook send --url {api}/webhooks/recalls --source-id DEMO-HOOK-1",
        f"  .venv/bin/babyshield audit --url {api}",
        "  .venv/bin/babyshield secrets",
        "  .venv/bin/babyshield rotate db-app",
        "  .venv/bin/babyshield local alarm waf-blocked-requests && .venv/bin/babyshield waf list",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def farewell(state: dict[str, Any]) -> str:
    """What stopping took away and what it left, so the next start holds no surprise:
    the AWS side lived in the moto server and is gone, the database may stay."""
    from ops.local_stack import LOCAL_DATABASE

    lines = [
        "stopped. Gone: the moto server with its secrets, tables and WAF blocks, and "
        ".babyshield/local.json.",
    ]
    where = str(state.get("database", ""))
    if where.startswith("an embedded"):
        lines.append("Gone too: the embedded PostgreSQL and its data.")
    else:
        place = (
            "the database DATABASE_URL names"
            if where in ("DATABASE_URL", "as given")
            else (f"the database {LOCAL_DATABASE} on {where}")
        )
        lines.append(
            f"Kept: {place}, with its recalls, users and API keys, and the babyshield_* "
            "roles: the next `make run` migrates it and reuses them (their passwords "
            "change), while blocks and secrets start afresh."
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import psycopg

    from ops.local_stack import (
        DEFAULT_RATE_LIMIT,
        LocalStackOptions,
        PortUnavailable,
        local_stack,
    )
    from ops.local_state import running_state

    port = (
        args.port
        if args.port is not None
        else _int_from_environment("PORT", DEFAULT_PORT, low=0, high=MAX_PORT)
    )
    rate_limit = _int_from_environment(
        "BABYSHIELD_LOCAL_RATE_LIMIT", DEFAULT_RATE_LIMIT, low=1, high=10_000_000
    )
    _check_admin_cidrs()
    _check_database_url()
    if running_state() is not None:
        raise CommandError(
            "a local stack is already running (.babyshield/local.json)",
            hint="stop it with Ctrl-C in its terminal first",
        )
    options = LocalStackOptions(port=port, rate_limit=rate_limit, quiet=args.quiet)
    stop = threading.Event()
    # SIGTERM (a CI runner, `kill`) and SIGHUP (the terminal closed) shut down as
    # cleanly as Ctrl-C: by default either ends the process with the state file and
    # an embedded PostgreSQL left behind.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    _say("starting the local stack: moto, PostgreSQL, migrations, demo data ...")
    try:
        with local_stack(options) as state:
            _say(banner(state))
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            _say("\nstopping the local stack")
        _say(farewell(state))
    except PortUnavailable as exc:
        raise CommandError(
            str(exc), hint="stop whatever uses that port, or set PORT to another one"
        ) from exc
    except psycopg.OperationalError as exc:
        from ops.db import connection_failure

        raise CommandError(
            f"cannot use the database: {connection_failure(exc)}",
            hint="check DATABASE_URL, or unset it to use 127.0.0.1:5432 or an embedded one",
        ) from exc
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
        # A developer's own login, a tier's, a read replica: it connects, then may not
        # create the stack's roles, database and tables.
        raise CommandError(
            f"DATABASE_URL's login may not set up the stack ({type(exc).__name__})",
            hint="name a superuser on a primary in DATABASE_URL (docs/DATABASE.md), or "
            "unset it to use 127.0.0.1:5432 or an embedded one",
        ) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _say(text: str) -> None:
    """Print to the terminal, which after SIGHUP is gone: a failed write must not stop
    the shutdown on its way."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


def _check_database_url() -> None:
    # libpq's parse errors quote the text they stopped at, which may be the password:
    # refuse a malformed value here, naming only the shape it should have.
    from ops.db import DATABASE_URL_EXAMPLE, NOT_A_DATABASE_URL, is_conninfo

    raw = os.environ.get("DATABASE_URL")
    if raw and not is_conninfo(raw):
        raise CommandError(f"DATABASE_URL is {NOT_A_DATABASE_URL}", hint=DATABASE_URL_EXAMPLE)


def _check_admin_cidrs() -> None:
    # The stack reads it only after moto and PostgreSQL are up; a typo should cost a
    # second and name the variable, not end a whole start-up in a settings dump.
    from functions.shared.settings import parse_cidrs

    raw = os.environ.get("ADMIN_ALLOWED_CIDRS")
    if not raw:
        return
    try:
        parse_cidrs(raw)
    except ValueError as exc:
        raise CommandError(
            f"ADMIN_ALLOWED_CIDRS is not a list of CIDRs: {exc}",
            hint="export ADMIN_ALLOWED_CIDRS=127.0.0.1/32,::1/128 (comma-separated, "
            "no host bits set), or unset it",
        ) from exc


def _alarm(args: argparse.Namespace) -> int:
    from functions.waf_responder.offenders import OffenderLookupFailed
    from ops.local_state import apply_local_environment
    from ops.waf import trigger_alarm

    why = NOT_SIMULATED.get(args.name)
    if why:
        # Refused before anything runs: exit 2, as for an unknown alarm name.
        raise UsageError(
            f"{args.name} cannot be simulated on the local stack: {why}",
            hint="babyshield local alarm waf-blocked-requests (the local edge logs its "
            "rate-rule blocks to the WAF log, which that alarm reads)",
        )
    apply_local_environment(required=True)
    try:
        result = trigger_alarm(args.name)
    except OffenderLookupFailed as exc:
        raise CommandError(
            f"the responder could not find the offenders: {exc}",
            hint="BABYSHIELD_DEBUG=1 shows the responder's whole log",
        ) from exc
    message = result.get("message") or result.get("status") or result
    print(message)
    return 0 if result.get("status") != "rejected" else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "local",
        help="run the platform on this machine",
        description="With no subcommand: start the whole platform on this machine (what "
        "`make run` runs): a moto server with every AWS resource, PostgreSQL, the API on "
        "http://127.0.0.1:PORT behind a local WAF stand-in. Ctrl-C stops it. `local alarm` "
        "fires an alarm into the WAF responder of the running stack.",
    )
    parser.add_argument(
        "--port", type=_port, default=None, help="0 to 65535 (default: $PORT or 8080)"
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.set_defaults(func=_run)
    commands = parser.add_subparsers(dest="local_command", metavar="SUBCOMMAND")
    alarm = commands.add_parser(
        "alarm", help="fire an alarm's EventBridge event into the responder (local stack)"
    )
    alarm.add_argument(
        "name",
        type=_alarm_name,
        metavar="NAME",
        help=f"one of {', '.join(RESPONDER_ALARMS)} "
        f"({names.ALARM_WAF_RATE.removeprefix(f'{names.PREFIX}-')} only in AWS)",
    )
    alarm.set_defaults(func=_alarm)
