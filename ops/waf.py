"""`babyshield waf list|block|unblock`: the on-call view and control of automatic blocks.

The command calls the same operations as the responder (functions/shared/blocks.py):
the registry changes first, then both IP sets are synced to it, so a block made
here looks exactly like one the responder made, and an unblock takes effect at once.
If the IP sets cannot be synced then, the change is still made (and audited): the
command says it is pending, and the sweep applies it.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from functions.shared import blocks, names
from functions.shared.aws_clients import error_code
from functions.shared.settings import IPNetwork, get_settings
from ops.console import (
    NO_CREDENTIALS,
    NO_CREDENTIALS_HINT,
    CommandError,
    UsageError,
    login_name,
    print_json,
    print_table,
)
from ops.provision import ensure_log_groups, ensure_tables

T = TypeVar("T")

DEFAULT_DURATION = "4h"
_DURATION = re.compile(r"^(-?)(\d{1,12})([smhd]?)$")  # more digits: not a duration
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_MANUAL_SECONDS = 30 * 86_400
DURATION_FORMS = (
    "must be a positive duration such as 30m, 2h or 1d "
    "(a whole number with s, m, h or d, or plain seconds)"
)


def parse_duration(text: str) -> int:
    """`90m`, `4h`, `2d` or plain seconds (case and surrounding blanks ignored); from
    1 minute to 30 days. A refusal reads after `--for ` (_WafActionParser puts it there)."""
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{DURATION_FORMS}: {shown} is not a duration")
    sign, number, unit = match.groups()
    seconds = int(number) * _UNIT_SECONDS[unit]
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"{DURATION_FORMS}: {shown} is zero")
    if sign:
        raise argparse.ArgumentTypeError(f"{DURATION_FORMS}: {shown} is negative")
    if seconds < 60:
        raise argparse.ArgumentTypeError(
            f"must be from 1 minute to 30 days: {shown} is under 1 minute"
        )
    if seconds > MAX_MANUAL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be from 1 minute to 30 days: {shown} is over 30 days"
        )
    return seconds


class _WafActionParser(argparse.ArgumentParser):
    """The parser of each `waf` action: `--for -5m` is a duration to refuse clearly,
    not an unknown option that leaves --for "expected one argument"."""

    # typeshed overloads this on the namespace type; the subparser is only ever called
    # the one way argparse calls it.
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None:
            args = _joined_negative_durations(list(args))
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message == "argument --for: expected one argument":
            message = f"argument --for: {DURATION_FORMS}: none given"
        super().error(message.replace("argument --for: ", "--for ", 1))


def _joined_negative_durations(args: list[str]) -> list[str]:
    joined: list[str] = []
    for arg in args:
        if joined and joined[-1] == "--for" and re.match(r"^-\d", arg):
            joined[-1] = f"--for={arg}"
        else:
            joined.append(arg)
    return joined


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _remaining(epoch: int, now: float) -> str:
    left = int(epoch - now)
    if left <= 0:
        return "expired"
    hours, rest = divmod(left, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


# Every text output shows addresses as the on-call message does (blocks.address_text);
# --json keeps CIDRs.
def _host_text(block: blocks.Block) -> str:
    return blocks.address_text(block.network)


def _addresses_text(cidrs: Iterable[str], separator: str = ", ") -> str:
    return separator.join(blocks.address_text(c) for c in cidrs)


def _shown(text: str | None, limit: int = blocks.MAX_REASON_LENGTH) -> str:
    """Registry text as a terminal should print it: every control or format character
    escaped (`\\x1b`, `\\n`), cut to `limit`. Entries may predate the rule on reasons,
    or come from a hand edit, and an escape sequence printed raw takes effect."""
    if text is None:
        return ""
    shown = "".join(
        c.encode("unicode_escape").decode("ascii") if blocks.is_unprintable(c) else c for c in text
    )
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _block_json(block: blocks.Block) -> dict[str, Any]:
    return {**block.to_json(), "expires": _when(block.blocked_until)}


def _validate_targets(targets: list[str]) -> None:
    # Before any AWS call, so a typo costs nothing and says exactly what is wrong.
    for target in targets:
        try:
            blocks.parse_target(target)
        except blocks.InvalidTarget as exc:
            raise UsageError(str(exc), hint="give an address such as 203.0.113.7") from exc


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it was raised from, each once: Powertools' SSM provider wraps
    what botocore raised."""
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        yield found
        found = found.__cause__ or found.__context__


def _unreachable_aws(error: BaseException, where: str) -> CommandError | None:
    """The message for missing credentials or an unreachable endpoint anywhere in
    `error`'s chain, else None."""
    for found in _chain(error):
        if isinstance(found, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
            return CommandError(
                f"cannot reach AWS at {where}",
                hint="start the local stack with `make run`, or check AWS_ENDPOINT_URL and "
                "the network",
            )
        if isinstance(found, NoCredentialsError):
            return CommandError(NO_CREDENTIALS, hint=NO_CREDENTIALS_HINT)
    return None


_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)
_THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "WAFLimitsExceededException",
    }
)
_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})


def _refusal(code: str) -> tuple[str, str]:
    """What an AWS error code means to on-call, and what to do next."""
    if code in _THROTTLED_CODES:
        return "AWS throttled the request", "wait a minute and run it again"
    if code in _DENIED_CODES:
        return (
            "AWS denied the request: your role lacks a permission it needs",
            "check AWS_PROFILE, and that the role has the permissions listed at the top of "
            "docs/RUNBOOK.md",
        )
    if code in _EXPIRED_CODES:
        return "your AWS credentials have expired", "run `aws sso login`, then rerun"
    return "AWS refused the request", "rerun with BABYSHIELD_DEBUG=1 to see AWS's message"


def _call_aws(operation: Callable[[], T]) -> T:
    """Run a block operation, turning every expected failure into a one-line message."""
    settings = get_settings()
    where = settings.aws_endpoint_url or f"the {settings.region} endpoints"
    try:
        return operation()
    except blocks.RegistryOutcomeUnknown as exc:
        # Neither made nor failed: on-call must look before acting on either belief.
        raise CommandError(
            str(exc),
            hint="`babyshield waf list --all` also shows releases; repeating the command "
            "is safe (a block re-applied is not a new offence)",
        ) from exc
    except blocks.RegistryWriteFailed as exc:
        # Some rows took effect (audited): on-call must know which, and that the WAF
        # enforces them only once the IP sets are synced.
        done = ", ".join(_host_text(b) for b in exc.changed) or "none known"
        raise CommandError(
            f"{exc}; took effect: {done}; the WAF IP sets were not updated for them",
            hint="repeat the command, or the expiry sweep (every 5 minutes) syncs the IP sets",
        ) from exc
    except blocks.ProtectedListUnavailable as exc:
        # The SSM read failed for want of credentials or a reachable endpoint: say so,
        # not that the list is broken.
        unreachable = _unreachable_aws(exc, where)
        if unreachable is not None:
            raise unreachable from exc
        if exc.parameter:
            raise CommandError(
                str(exc),
                hint=f"aws ssm get-parameter --name {exc.parameter}, then put-parameter "
                "--overwrite with the entry fixed (RUNBOOK: 'A legitimate customer was "
                "auto-blocked')",
            ) from exc
        code = next(filter(None, map(error_code, _chain(exc))), None)
        if code is not None:
            meaning, hint = _refusal(code)
            raise CommandError(f"{exc} ({meaning}: {code})", hint=hint) from exc
        raise CommandError(str(exc)) from exc
    except blocks.ProtectedAddress as exc:
        # Also raised for a range that only overlaps a list: say so, and where to look.
        raise CommandError(
            str(exc),
            hint="an address or range touching the admin allowlist or the never-block list "
            "is not blocked by hand: name only addresses outside both (`aws ssm get-parameter "
            f"--name {names.NEVER_BLOCK_PARAMETER}`, and {names.ADMIN_ALLOWLIST_PARAMETER})",
        ) from exc
    except blocks.BlockError as exc:
        raise CommandError(str(exc)) from exc
    except (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        NoCredentialsError,
    ) as exc:
        raise _unreachable_aws(exc, where) or CommandError(str(exc)) from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        if code == "ResourceNotFoundException":
            raise CommandError(
                f"the block registry table {settings.block_registry_table} does not exist",
                hint="deploy the stack, start `make run`, or set BLOCK_REGISTRY_TABLE",
            ) from exc
        if code == "WAFNonexistentItemException":
            raise CommandError(
                "the auto-block IP set does not exist",
                hint="check AUTO_BLOCK_IPSET_V4_ID / AUTO_BLOCK_IPSET_V6_ID",
            ) from exc
        meaning, hint = _refusal(code)
        raise CommandError(f"{meaning} ({code})", hint=hint) from exc
    except BotoCoreError as exc:
        raise CommandError(f"AWS call failed: {type(exc).__name__}") from exc


def _warn_pending(result: blocks.ChangeResult) -> None:
    if result.pending:
        print(
            f"warning: the WAF IP sets were not updated ({_shown(result.sync_error)}); "
            "the registry holds the change and the sweep applies it within "
            f"{blocks.SWEEP_PERIOD_MINUTES} minutes (so does any later block or unblock)"
        )


def _warn_left_out(report: blocks.SyncReport) -> None:
    if report.left_out:
        print(
            f"warning: {len(report.left_out)} live block(s) do not fit the IP set limit "
            f"of {get_settings().ipset_max_addresses} and are not enforced yet"
        )


def _list(args: argparse.Namespace) -> int:
    now = time.time()
    found = _call_aws(lambda: blocks.list_blocks(now, include_expired=args.all))
    live = [b for b in found if b.is_live(now)]
    # What the WAF refuses is what the IP sets hold, not what the registry says: a
    # block left out (protected, past the IP set limit, not synced yet) refuses nothing.
    in_waf: dict[str, str] = {}
    unread: str | None = None
    if live:
        try:
            in_waf = blocks.enforcement(live)
        except (BotoCoreError, ClientError) as exc:
            # The registry is the answer asked for; say what could not be added to it.
            unread = error_code(exc) or type(exc).__name__
    if args.json:
        print_json([{**_block_json(b), "in_waf": in_waf.get(b.ip)} for b in found])
        return 0
    if not found:
        print("no live blocks" if not args.all else "the block registry is empty")
        return 0
    print_table(
        ["ADDRESS", "EXPIRES (UTC)", "LEFT", "IN WAF", "ALARM", "OFFENCES", "REQUESTS", "REASON"],
        [
            (
                _host_text(b),
                _when(b.blocked_until),
                "released" if b.released else _remaining(b.blocked_until, now),
                in_waf.get(b.ip, "-"),
                _shown(b.alarm),
                b.offences,
                b.requests,
                _shown(b.reason),
            )
            for b in found
        ],
    )
    left_out = sorted(ip for ip, state in in_waf.items() if state != "all")
    if unread is not None:
        print(f"\nIN WAF unknown: the auto-block IP sets could not be read ({unread})")
    if left_out:
        print(
            f"\nnot (wholly) in the WAF's IP sets: {_addresses_text(left_out)}: protected "
            "addresses are cut out of a block, and past the IP set limit the oldest "
            "automatic blocks wait for room (the sweep syncs every 5 minutes)"
        )
    return 0


# The deployed stack keeps the protected lists in SSM (cdk/waf.py) and names them in
# its functions' environment; an on-call shell has no such variables.
_DEPLOYED_PROTECTED_LISTS = {
    "ADMIN_ALLOWED_CIDRS_PARAMETER": names.ADMIN_ALLOWLIST_PARAMETER,
    "NEVER_BLOCK_CIDRS_PARAMETER": names.NEVER_BLOCK_PARAMETER,
}


@contextmanager
def _deployed_protected_lists() -> Iterator[None]:
    """Against AWS, check blocks against the stack's own allowlist and never-block
    list: without their parameter names the lists read empty, and a blocked admin
    address would shut on-call out of the API, /admin/blocks included (and a sync
    would put back a block the sweep left out for being on a list now).

    For this command only: the names are gone from the environment afterwards, so a
    process that runs more (the tests, an in-process caller) keeps its own settings.
    """
    settings = get_settings()
    missing = (
        {}  # the local stack's lists come from its environment
        if settings.is_local or settings.aws_endpoint_url
        else {k: v for k, v in _DEPLOYED_PROTECTED_LISTS.items() if not os.environ.get(k)}
    )
    if not missing:
        yield
        return
    os.environ.update(missing)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name in missing:
            os.environ.pop(name, None)
        get_settings.cache_clear()


def _block(args: argparse.Namespace) -> int:
    _validate_targets(args.targets)
    try:
        blocks.check_reason(args.reason)
    except blocks.InvalidReason as exc:
        raise UsageError(
            str(exc),
            hint=f"one line of at most {blocks.MAX_REASON_LENGTH} characters, "
            'e.g. --reason "credential stuffing"',
        ) from exc
    actor = _acting(args)
    with _deployed_protected_lists():
        result = _call_aws(
            lambda: blocks.block(
                args.targets, reason=args.reason, duration_seconds=args.duration, actor=actor
            )
        )
    if args.json:
        print_json(
            {
                "blocked": [_block_json(b) for b in result.changed],
                "replaced": [_block_json(b) for b in result.replaced.values()],
                "pending": result.pending,
                "sync_error": result.sync_error,
            }
        )
        return 0
    for b in result.changed:
        print(f"blocked {_host_text(b)} until {_when(b.blocked_until)}")
        note = _single_ipv6_note(b.network)
        if note:
            print(f"  {note}")
        was = result.replaced.get(b.ip)
        if was is not None:
            # A block is replaced, not extended: say what it was, above all when shorter.
            shorter = " (shortened)" if b.blocked_until < was.blocked_until else ""
            print(
                f"  replaces the block until {_when(was.blocked_until)}{shorter} "
                f"by {_shown(was.actor or was.alarm, 80)}: {_shown(was.reason)}"
            )
    print(f"undo: babyshield waf unblock {' '.join(_host_text(b) for b in result.changed)}")
    _warn_pending(result)
    _warn_left_out(result.sync)
    return 0


def _single_ipv6_note(network: IPNetwork) -> str | None:
    """A hand block of one IPv6 address blocks that address, as asked; say so, and name
    the network the responder would block (IPv6 clients move within it)."""
    if network.version != 6 or network.prefixlen != network.max_prefixlen:
        return None
    prefix = get_settings().ipv6_offender_prefix
    if prefix == network.max_prefixlen:
        return None
    wider = network.supernet(new_prefix=prefix)
    return (
        f"only this address: an IPv6 client can move to others in its /{prefix}, which the "
        f"responder blocks whole; block {wider} to block that network"
    )


def _unmatched_event(event_id: str, changed: Sequence[blocks.Block]) -> tuple[str, str] | None:
    """Why `--event` released nothing, and what shows the events, or None if it did."""
    if any(b.event_id == event_id for b in changed):
        return None
    shown = _shown(event_id, 80)
    remembered = _call_aws(lambda: blocks.list_blocks(include_expired=True))
    released = [b for b in remembered if b.event_id == event_id and b.released]
    if released:
        by = ", ".join(sorted({_shown(b.released_by, 80) for b in released if b.released_by}))
        return (
            f"every block of event {shown} is unblocked already" + (f" (by {by})" if by else ""),
            "babyshield waf list --all shows them as released",
        )
    return (
        f"no block carries event {shown}",
        "babyshield waf list --all --json shows each block's event_id",
    )


def _unblock(args: argparse.Namespace) -> int:
    _validate_targets(args.targets)
    if not args.targets and not args.event:
        raise UsageError("name the addresses to unblock, or --event ID", hint="babyshield waf list")
    actor = _acting(args)
    # The sync after an unblock leaves protected addresses out of the IP sets: with
    # empty lists it would put back a block the sweep had taken out for being protected.
    now = time.time()
    with _deployed_protected_lists():
        result = _call_aws(
            lambda: blocks.unblock(args.targets, actor=actor, event_id=args.event, now=now)
        )
    unmatched = _unmatched_event(args.event, result.changed) if args.event else None
    if args.json:
        print_json(
            {
                "unblocked": [_block_json(_as_released(b, actor, now)) for b in result.changed],
                "expired": result.expired,
                "not_blocked": result.not_found,
                "event_not_blocked": args.event if unmatched else None,
                "covered_by": result.covered_by,
                "blocked_inside": result.blocked_inside,
                "pending": result.pending,
                "sync_error": result.sync_error,
            }
        )
    else:
        for b in result.changed:
            if b.ip in result.expired:
                # Not blocked before either: say so, and what the release still did.
                print(
                    f"not blocked: {_host_text(b)} (its block expired {_when(b.blocked_until)}); "
                    "its offences are reset and what it did so far will not block it again"
                )
            else:
                print(f"unblocked {_host_text(b)} (was: {_shown(b.reason)})")
            covering = result.covered_by.get(b.ip)
            if covering:
                print(
                    f"warning: {_host_text(b)} is still refused at the WAF: it is inside the "
                    f"blocked {_addresses_text(covering)}; only unblocking that network lets it "
                    "through"
                )
            inside = result.blocked_inside.get(b.ip)
            if inside:
                print(
                    f"warning: blocks inside {_host_text(b)} stay: {_addresses_text(inside)} "
                    "(still refused at the WAF; unblock them by name)"
                )
        _warn_pending(result)
        for ip in result.not_found:
            covering = result.covered_by.get(ip)
            inside = result.blocked_inside.get(ip)
            if covering:
                # Still refused at the WAF: say which block does it and what lifts it.
                print(
                    f"not blocked by itself: {blocks.address_text(ip)} is inside the blocked "
                    f"{_addresses_text(covering)}; only unblocking that network lets it through"
                )
            elif inside:
                print(
                    f"not blocked as a whole: {blocks.address_text(ip)}; blocked inside it: "
                    f"{_addresses_text(inside)} (unblock them by name)"
                )
            else:
                print(f"not blocked: {blocks.address_text(ip)}")
        if unmatched:
            print(f"not blocked: {unmatched[0]}")
    wider = sorted({n for networks in result.covered_by.values() for n in networks})
    narrower = sorted({n for networks in result.blocked_inside.values() for n in networks})
    if not result.changed:
        if wider or narrower:
            hint = f"babyshield waf unblock {_addresses_text(wider or narrower, ' ')}"
        elif unmatched and not args.targets:
            hint = unmatched[1]
        else:
            hint = "babyshield waf list shows live blocks"
        raise CommandError("nothing was unblocked", hint=hint)
    # Every target the WAF still refuses, whether its own block was lifted or it never
    # had one: with any of them the command did not do what was asked.
    asked = {b.ip for b in result.changed} | set(result.not_found)
    still = sorted(ip for ip in asked if ip in result.covered_by)
    if still:
        raise CommandError(
            f"{_addresses_text(still)} still refused at the WAF by a wider block",
            hint="babyshield waf unblock "
            + _addresses_text(sorted({n for ip in still for n in result.covered_by[ip]}), " "),
        )
    return 0


def _as_released(block: blocks.Block, actor: str, now: float) -> blocks.Block:
    """An unblocked row as the registry holds it now. blocks.unblock answers with the
    rows as it found them (the audit line's "what was lifted"); the release it wrote
    resets the offences and dates the release as here, with the same `now`."""
    if block.released:  # read back on a later pass: the release itself
        return block
    return replace(block, offences=0, released_at=int(now), released_by=actor)


def ensure_local_resources(admin_cidrs: str = "") -> dict[str, str]:
    """Create the responder's resources where AWS_ENDPOINT_URL points (the local stack),
    and the admin allowlist IP sets the WebACL's first rule reads, holding
    `admin_cidrs` (comma-separated; none allows no admin request, as in the stack).

    Named as the CDK stack names them, and idempotent: an existing table, IP set,
    log group or topic is reused (an admin allowlist set is given `admin_cidrs`).
    Returns the environment the responder, the local edge and this command need to
    find what has no fixed name (IP set ids, the topic ARN).
    """
    settings = get_settings()
    ensure_tables(
        blocks.aws_client("dynamodb"),
        [
            t
            for t in names.TABLES
            if t.name in (names.BLOCK_REGISTRY_TABLE, names.IDEMPOTENCY_TABLE)
        ],
    )
    wafv2 = blocks.aws_client("wafv2")
    existing = {
        summary["Name"]: summary["Id"]
        for summary in wafv2.list_ip_sets(Scope=settings.waf_scope, Limit=100).get("IPSets", [])
    }
    env: dict[str, str] = {}
    for version, name in (
        (4, settings.auto_block_ipset_v4_name),
        (6, settings.auto_block_ipset_v6_name),
    ):
        if name not in existing:
            created = wafv2.create_ip_set(
                Name=name,
                Scope=settings.waf_scope,
                IPAddressVersion=f"IPV{version}",
                Addresses=[],
                Description="auto-block: kept equal to the block registry by waf_responder",
            )
            existing[name] = created["Summary"]["Id"]
        env[f"AUTO_BLOCK_IPSET_V{version}_ID"] = existing[name]
    env.update(_ensure_admin_allowlist_ip_sets(wafv2, existing, admin_cidrs))
    ensure_log_groups(blocks.aws_client("logs"), (settings.waf_log_group, settings.api_log_group))
    # CreateTopic is idempotent by name.
    topic = blocks.aws_client("sns").create_topic(Name=names.ONCALL_TOPIC)
    env["ONCALL_TOPIC_ARN"] = topic["TopicArn"]
    return env


def _ensure_admin_allowlist_ip_sets(
    wafv2: Any, existing: dict[str, str], admin_cidrs: str
) -> dict[str, str]:
    """The admin allowlist IP sets, by IP version, holding what CDK writes into them."""
    from functions.shared.settings import parse_cidrs

    scope = get_settings().waf_scope
    networks = parse_cidrs(admin_cidrs)
    env: dict[str, str] = {}
    for version, name in ((4, names.ADMIN_ALLOWLIST_IPSET_V4), (6, names.ADMIN_ALLOWLIST_IPSET_V6)):
        addresses = [str(network) for network in networks if network.version == version]
        if name in existing:
            found = wafv2.get_ip_set(Name=name, Scope=scope, Id=existing[name])
            wafv2.update_ip_set(
                Name=name,
                Scope=scope,
                Id=existing[name],
                Addresses=addresses,
                LockToken=found["LockToken"],
            )
        else:
            created = wafv2.create_ip_set(
                Name=name,
                Scope=scope,
                IPAddressVersion=f"IPV{version}",
                Addresses=addresses,
                Description="admin allowlist: /admin and /monitoring only from these",
            )
            existing[name] = created["Summary"]["Id"]
        env[f"ADMIN_ALLOWLIST_IPSET_V{version}_ID"] = existing[name]
    return env


def trigger_alarm(alarm: str) -> dict[str, Any]:
    """Invoke the responder in-process with the event EventBridge sends for `alarm`.

    `alarm` is a full alarm name or its short form (`waf-blocked-requests`).
    """
    from functions.waf_responder.events import alarm_state_change_event
    from functions.waf_responder.handler import lambda_handler
    from ops.apigw import LocalLambdaContext

    name = alarm if alarm.startswith(f"{names.PREFIX}-") else f"{names.PREFIX}-{alarm}"
    context = LocalLambdaContext(
        function_name=names.function_name("waf_responder"),
        log_group_name=f"/aws/lambda/{names.function_name('waf_responder')}",
        timeout_seconds=60,
    )
    result: dict[str, Any] = lambda_handler(alarm_state_change_event(name), context)
    return result


def _acting(args: argparse.Namespace) -> str:
    """`--by`, else the login name; a shell with neither must say who acts."""
    if args.by is not None:
        return str(args.by)
    try:
        return _actor(login_name() or "")
    except argparse.ArgumentTypeError:
        raise CommandError(
            "cannot tell who is acting: no USER, LOGNAME or passwd entry for this uid",
            hint="name yourself with --by NAME (it is audited)",
        ) from None


def _actor(text: str) -> str:
    """Who acts, as the audit line records it: `--by "$USER"` in a shell without USER
    (cron, some containers) would otherwise record nobody."""
    actor = text.strip()
    if not actor or not actor.isprintable():
        raise argparse.ArgumentTypeError("name who is acting, e.g. --by alice (it is audited)")
    return actor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    waf = subparsers.add_parser(
        "waf",
        help="list, block and unblock WAF auto-blocks",
        description="The WAF block registry and its IP sets, as on-call sees them: list "
        "the live blocks with reason and expiry, block addresses by hand, and unblock "
        "(one address, or everything one alarm event blocked). Against the running local "
        "stack, or AWS when the shell targets it.",
    )
    actions = waf.add_subparsers(
        dest="waf_action", metavar="ACTION", required=True, parser_class=_WafActionParser
    )

    listing = actions.add_parser("list", help="live blocks with reason and expiry")
    listing.add_argument("--all", action="store_true", help="include expired, remembered blocks")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_list)

    block = actions.add_parser("block", help="block addresses by hand")
    block.add_argument("targets", nargs="+", metavar="IP", help="address or CIDR")
    block.add_argument("--reason", required=True, help="why (kept in the registry and audit log)")
    block.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        default=parse_duration(DEFAULT_DURATION),
        metavar="DURATION",
        help=f"how long, e.g. 30m, 4h, 2d (default {DEFAULT_DURATION})",
    )
    block.add_argument(
        "--by", type=_actor, default=None, help="who is blocking (default: your login name)"
    )
    block.add_argument("--json", action="store_true", help="machine-readable output")
    block.set_defaults(func=_block)

    unblock = actions.add_parser("unblock", help="remove blocks at once")
    unblock.add_argument("targets", nargs="*", metavar="IP", help="address or CIDR")
    unblock.add_argument("--event", help="every block made by this responder event id")
    unblock.add_argument(
        "--by", type=_actor, default=None, help="who is unblocking (default: your login name)"
    )
    unblock.add_argument("--json", action="store_true", help="machine-readable output")
    unblock.set_defaults(func=_unblock)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the waf commands (the on-call message's commands parse with it)."""
    parser = argparse.ArgumentParser(prog="babyshield")
    register(parser.add_subparsers(dest="command", required=True))
    return parser
