"""`babyshield rotate`: rotate one inventory secret, or all of them, now.

Against AWS it asks Secrets Manager (RotateSecret) and waits for the new version
to become AWSCURRENT. Against the local stack (AWS_ENDPOINT_URL set: a moto
server, which cannot run Lambdas) it plays Secrets Manager itself and calls the
real rotation handler through its four steps. `--emergency` makes the old value
useless at once (see docs/ROTATION.md); `db-admin --emergency` rotates db-readonly
and db-app as emergencies right after it (the admin login can set their
passwords). `--all`, and that admin emergency, carry on past a failed secret and
exit non-zero at the end if any failed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ops.console import (
    NO_CREDENTIALS,
    NO_CREDENTIALS_HINT,
    CommandError,
    UsageError,
    cli_caller,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from functions.shared.db.roles import RoleNames
    from functions.shared.inventory import SecretSpec
    from functions.shared.rotation.store import SecretMetadata, SecretStore

Mode = Literal["local", "service"]

# What an emergency rotation does to the old value, per kind (printed per secret).
RETIRED = {
    "database": "old login's password replaced and its sessions ended",
    # Warm API instances hold the keys for SECRET_CACHE_SECONDS (docs/RUNBOOK.md).
    "jwt-signing-key": "old key dropped from verification: tokens it signed are refused "
    "once each warm API instance reloads its keys (SECRET_CACHE_SECONDS, 60 s by default)",
    "iam-access-key": "old access key deactivated",
    "generated": "old secret retired: signatures made with it are refused once each warm "
    "API instance reloads it (SECRET_CACHE_SECONDS, 60 s by default)",
}


# Seconds before each read of the emergency tag after setting it.
TAG_READ_BACK_PAUSES = (0.0, 0.5, 1.0)


@dataclass
class Outcome:
    name: str
    ok: bool
    version_id: str | None
    detail: str

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ok": self.ok,
            "version_id": self.version_id,
            "detail": self.detail,
        }


def choose_mode(requested: str) -> Mode:
    from functions.shared.settings import get_settings

    if requested == "local":
        return "local"
    if requested == "service":
        return "service"
    return "local" if get_settings().aws_endpoint_url else "service"


def rotate_locally(
    store: SecretStore, item: SecretSpec, *, emergency: bool, resume: bool
) -> Outcome:
    from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed
    from functions.shared.rotation.protocol import RotationError

    driver = LocalRotationDriver(store=store)
    try:
        with _only_rotation_of(item):
            result = driver.rotate(item.name, emergency=emergency, resume=resume)
    except RotationBusy as busy:
        return Outcome(item.name, False, None, str(busy))
    except RotationFailed as failed:
        return Outcome(
            item.name,
            False,
            failed.token if failed.left_pending else None,
            f"{failed.step} failed {failed.attempts}x ({_cause(failed.cause)}); "
            + _what_now(store, item, failed.left_pending, emergency=emergency),
        )
    except RotationError as exc:
        from functions.shared.rotation.driver import NothingToResume
        from functions.shared.rotation.protocol import RotationInProgress

        # The line names the secret already.
        detail = str(exc).removeprefix(f"{item.name}: ")
        if isinstance(exc, NothingToResume):
            detail += f"; `{_again(item, emergency)}` starts a new rotation"
        elif isinstance(exc, RotationInProgress) and "before this emergency" not in detail:
            detail += (
                f"; finish it with `babyshield rotate {item.name} --resume` (an emergency "
                "stays one)"
            )
        return Outcome(item.name, False, _pending(store, item), detail)
    detail = f"in {result.seconds:.1f}s"
    if result.emergency:
        if resume and not emergency:
            detail += "; resumed as an emergency"
        detail += f"; {RETIRED[item.kind]}"
    return Outcome(item.name, True, result.version_id, detail)


class RotationBusy(Exception):
    pass


def rotation_lock_path(item: SecretSpec) -> Path:
    from functions.shared.settings import get_settings

    stack = hashlib.sha256(str(get_settings().aws_endpoint_url).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"babyshield-rotate-{stack}-{item.name}.lock"


@contextmanager
def _only_rotation_of(item: SecretSpec) -> Iterator[None]:
    """Secrets Manager refuses a second RotateSecret while one runs; moto runs none,
    so two local runs of the same secret could each store a pending version and
    leave one naming a login already in use. A lock per stack and secret, held for
    the four steps, refuses the second run as the service would."""
    with rotation_lock_path(item).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RotationBusy(
                f"another `babyshield rotate` of {item.name} is running on this machine; "
                "let it finish"
            ) from None
        yield


def _cause(error: BaseException) -> str:
    """The failure's type, and its message where it is ours (a login name, a rule),
    never a library's text, which may quote a connection string."""
    from functions.rotate_db.database import LoginRefused
    from functions.shared.rotation.protocol import RotationError

    if isinstance(error, LoginRefused):
        return f"LoginRefused: the database refused the login {error}"
    if isinstance(error, RotationError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


def _pending(store: SecretStore, item: SecretSpec) -> str | None:
    try:
        return store.describe(item.secret_name).unfinished_rotation()
    except Exception:  # noqa: BLE001 - only for the report; the failure is already known
        return None


def _again(item: SecretSpec, emergency: bool) -> str:
    """The command that rotates `item` from the start (an emergency stays one)."""
    return f"babyshield rotate {item.name}" + (" --emergency" if emergency else "")


def _promoted_unfinished(store: SecretStore, item: SecretSpec) -> bool:
    try:
        return store.describe(item.secret_name).promoted_unfinished()
    except Exception:  # noqa: BLE001 - unknown: the other advice still holds
        return False


def _what_now(
    store: SecretStore, item: SecretSpec, left_pending: bool, *, emergency: bool = False
) -> str:
    """What the next run must be, after a failure or an interruption. In an emergency
    the command keeps --emergency: a routine rerun would leave the leaked value valid."""
    if not left_pending:
        advice = f"nothing was stored; run `{_again(item, emergency)}` again once fixed"
    elif _promoted_unfinished(store, item):
        # Past its promotion: only finishing runs the tidy-up; --cancel is refused.
        advice = (
            f"current already, not finished: finish it with `babyshield rotate {item.name} "
            "--resume`"
        )
    elif item.name == "db-admin":
        # The database may hold the pending password already: only finishing is safe.
        advice = f"left AWSPENDING: finish it with `babyshield rotate {item.name} --resume`"
    else:
        advice = (
            f"left AWSPENDING: finish it with `babyshield rotate {item.name} --resume` "
            "or drop it with --cancel"
        )
        if emergency:
            advice += f" and then run `{_again(item, emergency)}`"
    if item.kind == "database" and item.name != "db-admin":
        from functions.shared.inventory import spec

        # A tier's rotation logs in with the admin secret: an interrupted admin rotation
        # leaves the database on a password only its AWSPENDING names, a state to end.
        if _pending(store, spec("db-admin")) is not None:
            advice += (
                "; db-admin has a rotation in progress: `babyshield rotate db-admin --resume` first"
            )
    return advice


def rotate_via_service(
    store: SecretStore,
    item: SecretSpec,
    *,
    emergency: bool,
    wait_seconds: float,
    poll_seconds: float = 2.0,
) -> Outcome:
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.shared.rotation.clients import error_code
    from functions.shared.rotation.store import CURRENT, EMERGENCY_TAG, PENDING, PREVIOUS

    metadata = store.describe(item.secret_name)
    in_progress = metadata.unfinished_rotation()
    if metadata.promoted_unfinished():
        return Outcome(
            item.name,
            False,
            in_progress,
            "the last rotation stopped after its promotion: finish it first with "
            f"`babyshield rotate {item.name} --resume`",
        )
    if in_progress is not None:
        return Outcome(
            item.name,
            False,
            in_progress,
            "a rotation is already in progress (AWSPENDING); see the RUNBOOK's 'A rotation failed'",
        )
    token = str(uuid.uuid4())
    if emergency:
        # One tag for the secret: overwriting another command's would turn its
        # rotation, already asked for, into a routine one.
        other = metadata.tags.get(EMERGENCY_TAG)
        if other is None:
            store.mark_emergency(item.secret_name, token)
            # A read right after TagResource may not show the tag yet: only a tag
            # that names another token, or none after a few reads, stops the command.
            for pause in TAG_READ_BACK_PAUSES:
                time.sleep(pause)
                other = store.describe(item.secret_name).tags.get(EMERGENCY_TAG)
                if other is not None:
                    break
        if other != token:
            return Outcome(item.name, False, None, _tag_taken(item, other))
    try:
        store.client.rotate_secret(
            SecretId=item.secret_name, ClientRequestToken=token, RotateImmediately=True
        )
    except (ClientError, BotoCoreError) as exc:
        refused = f"RotateSecret refused: {error_code(exc) or exc}"
        # An error can be a lost answer to a call the service took: then the rotation
        # runs, and an emergency's tag must stay, or the function finishes it as a
        # routine one and the leaked value stays live.
        try:
            after: SecretMetadata | None = store.describe(item.secret_name)
        except (ClientError, BotoCoreError):
            after = None
        if after is None:
            kept = f"; the {EMERGENCY_TAG} tag stays on the secret" if emergency else ""
            return Outcome(
                item.name,
                False,
                token,
                f"{refused}, and the secret could not be read to see whether rotation "
                f"{token} started{kept}: check `babyshield secrets` before repeating",
            )
        if token not in after.stages:
            # Only a tag that still names this command's token: another command may
            # have replaced it since, for a rotation that did start.
            if emergency and after.tags.get(EMERGENCY_TAG) == token:
                try:
                    store.clear_emergency(item.secret_name)
                except (ClientError, BotoCoreError) as untag:
                    # The refusal is the news; a tag left behind only needs removing.
                    refused += (
                        f"; the {EMERGENCY_TAG} tag is still on the secret "
                        f"({error_code(untag) or untag}): remove it"
                    )
            return Outcome(item.name, False, None, refused)
        # The answer was lost, the rotation started: wait for it as for any other.
    deadline = time.monotonic() + wait_seconds
    while True:
        metadata = store.describe(item.secret_name)
        stages = metadata.stages.get(token, ())
        # finishSecret promotes first, tidies (the old value's retirement), and drops
        # AWSPENDING last: promoted alone, it may still fail and leave it unfinished.
        done = CURRENT in stages and PENDING not in stages
        if done and not (emergency and metadata.tags.get(EMERGENCY_TAG) == token):
            if not emergency:
                return Outcome(item.name, True, token, "by Secrets Manager")
            # finishSecret takes AWSPREVIOUS away in an emergency, before the tag; a
            # rotation whose tag another command removed or replaced finished as a
            # routine one and left the old value AWSPREVIOUS.
            if metadata.version_with(PREVIOUS) is None:
                return Outcome(item.name, True, token, f"by Secrets Manager; {RETIRED[item.kind]}")
            return Outcome(
                item.name,
                False,
                token,
                "finished by Secrets Manager as a routine rotation (another command "
                f"changed the {EMERGENCY_TAG} tag): the old value was NOT retired and is "
                f"still AWSPREVIOUS; run `{_again(item, emergency)}` again",
            )
        if time.monotonic() >= deadline:
            if CURRENT in stages:
                return Outcome(
                    item.name,
                    False,
                    token,
                    f"promoted, but its finishSecret had not finished after {wait_seconds:.0f}s "
                    "(the version still holds AWSPENDING): Secrets Manager retries it; if "
                    "`babyshield secrets` still shows it pending, read the rotation function's "
                    f"logs, fix the cause and run `babyshield rotate {item.name} --resume`",
                )
            return Outcome(
                item.name,
                False,
                token,
                f"not finished after {wait_seconds:.0f}s; check the rotation function's logs "
                "and `babyshield secrets`",
            )
        time.sleep(poll_seconds)


def _tag_taken(item: SecretSpec, other: str | None) -> str:
    from functions.shared.rotation.store import EMERGENCY_TAG

    if other is None:
        return (
            f"the {EMERGENCY_TAG} tag was removed as it was set (another command "
            f"changed it); nothing was started: run `{_again(item, True)}` again"
        )
    return (
        f"the {EMERGENCY_TAG} tag names rotation {other}: another emergency rotation "
        "is starting (or one left its tag behind); nothing was started. Wait for it "
        "(`babyshield secrets`); if none runs, remove the tag (`aws secretsmanager "
        f"untag-resource --secret-id {item.secret_name} --tag-keys {EMERGENCY_TAG}`) "
        f"and run `{_again(item, True)}` again"
    )


Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


# Longer than the rotation functions' own timeout (two minutes): the answer of a step
# that runs its full course still arrives.
INVOKE_READ_SECONDS = 150


def _lambda_client() -> Any:
    from botocore.config import Config

    from functions.shared.aws_clients import new_client
    from functions.shared.settings import get_settings

    settings = get_settings()
    return new_client(
        "lambda",
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        # One attempt: an Invoke is not idempotent, and a retry after a slow answer
        # would run the step a second time beside the first.
        config=Config(
            connect_timeout=10,
            read_timeout=INVOKE_READ_SECONDS,
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


def invoke_rotation_function(function_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """One rotation step, run by the deployed function as Secrets Manager runs it
    (RequestResponse, one attempt). Returns the function's error payload, or {} on
    success; raises what botocore raises when the call itself fails."""
    answer = _lambda_client().invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    if not answer.get("FunctionError"):
        return {}
    try:
        found = json.loads(answer["Payload"].read() or b"{}")
    except ValueError:
        found = {}
    return found if isinstance(found, dict) else {}


def finish_via_function(
    store: SecretStore, item: SecretSpec, invoke: Invoke = invoke_rotation_function
) -> Outcome:
    """`--resume` against AWS: finish a rotation that stopped after its promotion.

    Secrets Manager cannot be asked to run one step of a version; the rotation
    function can, with the same event it would send. Only finishSecret, and only for
    a version that is current already: its tidy-up (the leaked login retired, the old
    key deactivated) is what is left. Before the promotion the way on is --cancel and
    a new rotation.
    """
    from functions.shared import names
    from functions.shared.rotation.store import EMERGENCY_TAG

    metadata = store.describe(item.secret_name)
    unfinished = metadata.unfinished_rotation()
    if unfinished is None:
        raise CommandError(f"{item.name}: nothing to resume: every rotation finished")
    if not metadata.promoted_unfinished():
        # An emergency stays one: a routine rotation would keep the leaked value
        # working as AWSPREVIOUS.
        again = " --emergency" if metadata.tags.get(EMERGENCY_TAG) == unfinished else ""
        raise CommandError(
            f"{item.name}: version {unfinished} was never promoted; Secrets Manager "
            "cannot be asked to finish it",
            hint=f"babyshield rotate {item.name} --cancel, then babyshield rotate "
            f"{item.name}{again} (the RUNBOOK's 'A rotation failed')",
        )
    function = names.function_name(item.method)
    event = {"Step": "finishSecret", "SecretId": metadata.arn, "ClientRequestToken": unfinished}
    try:
        error = invoke(function, event)
    except Exception as exc:  # noqa: BLE001 - the call failed or its answer was lost
        from functions.shared.aws_clients import error_code

        # The step may have run all the same: the secret says whether it finished.
        if store.describe(item.secret_name).unfinished_rotation() != unfinished:
            return Outcome(item.name, True, unfinished, f"finished by {function}")
        why = error_code(exc) or type(exc).__name__
        return Outcome(
            item.name,
            False,
            unfinished,
            f"could not run finishSecret in {function} ({why}); still unfinished",
        )
    if error:
        return Outcome(
            item.name,
            False,
            unfinished,
            f"finishSecret failed in {function} ({error.get('errorType', 'error')}); "
            "its logs say why",
        )
    if store.describe(item.secret_name).unfinished_rotation() == unfinished:
        return Outcome(item.name, False, unfinished, "finishSecret ran but left it unfinished")
    detail = f"finished by {function}"
    if metadata.tags.get(EMERGENCY_TAG) == unfinished:
        detail += f"; {RETIRED[item.kind]}"
    return Outcome(item.name, True, unfinished, detail)


def _run(args: argparse.Namespace) -> int:
    # The step logs go to the terminal only with --verbose. The logger exists already
    # (imported with the settings), so its level is set here and put back afterwards.
    from functions.shared.observability import logger

    previous = logger.log_level
    if args.verbose:
        from ops.cli import show_every_log_line

        show_every_log_line()
    else:
        logger.setLevel("WARNING")
    try:
        return _rotate(args)
    finally:
        logger.setLevel(previous)


def _rotate(args: argparse.Namespace) -> int:
    if args.name and args.all:
        raise UsageError(
            f"name one secret or pass --all, not both (--all with {args.name})",
            hint=f"babyshield rotate {args.name}, or babyshield rotate --all",
        )
    if not args.name and not args.all:
        raise UsageError("name one secret or pass --all", hint="babyshield secrets lists them")
    if args.all and (args.resume or args.cancel):
        raise UsageError("--resume and --cancel take one secret name")
    if args.cancel and (args.emergency or args.resume):
        raise UsageError("--cancel cannot be combined with --emergency or --resume")
    if not 0 < args.wait < math.inf:  # also false for nan, which never times out
        raise UsageError("--wait takes a number of seconds above 0")

    from functions.shared.inventory import INVENTORY, spec

    try:
        items = _admin_first(INVENTORY) if args.all else [spec(args.name)]
    except KeyError as exc:
        raise UsageError(str(exc.args[0]), hint="babyshield secrets lists them") from None
    followers = _tiers_after_admin(items, emergency=args.emergency, resume=args.resume)
    items += followers
    try:
        mode, store = _prepare(args)
    except KeyboardInterrupt:
        # Before any secret was touched: every one is still to do, and said so.
        if args.cancel or args.resume:
            raise
        _report(
            [_not_started(item, args.emergency) for item in items],
            as_json=args.json,
            summary=len(items) > 1,
        )
        return 130

    if args.cancel:
        return _cancel(store, items[0], as_json=args.json)
    if args.resume and mode == "service":
        outcome = finish_via_function(store, items[0])
        if not args.json:
            status = "finished" if outcome.ok else "FAILED"
            print(f"{outcome.name}: {status} {outcome.version_id or ''} {outcome.detail}".rstrip())
        _report([outcome], as_json=args.json, summary=False)
        return 0 if outcome.ok else 1

    if followers and not args.json:
        print(ADMIN_EMERGENCY_NOTE)
    outcomes: list[Outcome] = []
    for index, item in enumerate(items):
        try:
            if mode == "local":
                outcome = rotate_locally(store, item, emergency=args.emergency, resume=args.resume)
            else:
                outcome = rotate_via_service(
                    store, item, emergency=args.emergency, wait_seconds=args.wait
                )
        except KeyboardInterrupt:
            # What ran, what stopped and what never started: a leak is only contained
            # once every secret is rotated, so the rest must be named, not dropped.
            outcomes.append(_interrupted(store, item, mode, emergency=args.emergency))
            outcomes.extend(_not_started(later, args.emergency) for later in items[index + 1 :])
            _report(outcomes, as_json=args.json, summary=len(items) > 1)
            return 130
        except Exception as exc:  # noqa: BLE001 - one secret's failure must not stop the others
            outcome = Outcome(
                item.name, False, _pending(store, item), f"{type(exc).__name__}: {exc}"
            )
        if item in followers:
            outcome.detail += f"; {FOLLOWS_ADMIN}"
        outcomes.append(outcome)
        if not args.json:
            status = "rotated" if outcome.ok else "FAILED"
            print(f"{item.name}: {status} {outcome.version_id or ''} {outcome.detail}".rstrip())
    _report(outcomes, as_json=args.json, summary=len(outcomes) > 1)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _prepare(args: argparse.Namespace) -> tuple[Mode, SecretStore]:
    """The rotation mode and the store, with the environment the local handlers need."""
    from functions.shared.rotation.store import SecretStore
    from functions.shared.settings import get_settings

    mode = choose_mode(args.mode)
    endpoint = get_settings().aws_endpoint_url
    if mode == "service" and endpoint:
        # moto accepts RotateSecret but has no rotation function to call: it would add
        # an empty version and label it AWSCURRENT beside the real one. The endpoint is
        # the running local stack's (.babyshield/local.json) unless the shell set one.
        raise CommandError(
            f"--mode service needs Secrets Manager itself, and this command goes to {endpoint} "
            "(the local stack while `make run` runs, or AWS_ENDPOINT_URL)",
            hint="use --mode local (the default there); for AWS, run from a shell that "
            "targets it (AWS_PROFILE or credentials set, no AWS_ENDPOINT_URL)",
        )
    if _no_credentials():
        # Once, before any secret: each would fail alike, and a line per secret with
        # botocore's text alone says nothing of what to do.
        raise CommandError(NO_CREDENTIALS, hint=NO_CREDENTIALS_HINT)
    if mode == "local":
        # The handlers run in this process: local database (no TLS), no CloudWatch.
        os.environ.setdefault("BABYSHIELD_ENV", "local")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    get_settings.cache_clear()
    return mode, SecretStore(caller=cli_caller())


def _no_credentials() -> bool:
    """True when the shell has no AWS credentials anywhere botocore looks (the local
    stack's are set by then). A profile that cannot be read is not decided here: the
    first call reports it."""
    import botocore.session

    try:
        return botocore.session.Session().get_credentials() is None
    except Exception:  # noqa: BLE001 - undecided: the rotation's own calls say why
        return False


def _admin_first(items: Iterable[SecretSpec]) -> list[SecretSpec]:
    """Every secret, the database admin's first. Its login can set any tier login's
    password (sql/007): in an emergency, a session opened with the leaked admin
    password runs until the admin's rotation ends it, and one that outlived the
    tiers' rotations could give a tier's new login a password of its own."""
    return sorted(items, key=lambda item: item.name != "db-admin")


FOLLOWS_ADMIN = "with db-admin's emergency: its login can set this tier's passwords"
ADMIN_EMERGENCY_NOTE = (
    "db-admin --emergency: db-readonly and db-app follow it as emergencies; the admin "
    "login can set every tier login's password (sql/007), so a leaked admin session may "
    "have given one, the spare one included, a password of its own"
)


def _tiers_after_admin(
    items: list[SecretSpec], *, emergency: bool, resume: bool
) -> list[SecretSpec]:
    """The tier secrets an emergency of db-admin alone must rotate too, right after it.

    A leak of the admin is a leak of what it can set: a session opened with its
    password can give a tier's spare login (unused between rotations) a password of
    its own, which the admin's rotation does not undo and `babyshield audit` cannot
    see. Only a new emergency: --resume finishes the one rotation left unfinished,
    and an interrupted run already names the tiers it never reached.
    """
    from functions.rotate_db.strategies import TIER_OF_SECRET
    from functions.shared.inventory import INVENTORY

    if not emergency or resume or [item.name for item in items] != ["db-admin"]:
        return []
    # The tiers whose logins the admin login can set (sql/007), in --all's order.
    return [item for item in INVENTORY if item.name in TIER_OF_SECRET]


INTERRUPTED = "INTERRUPTED"
NOT_STARTED = "not started"


def _report(outcomes: list[Outcome], *, as_json: bool, summary: bool) -> None:
    if as_json:
        print_json([outcome.as_json() for outcome in outcomes])
    elif summary:
        print()
        print_table(
            ("SECRET", "RESULT", "VERSION"),
            # A failed row's version is the one left AWSPENDING, if any.
            [(o.name, _result(o), o.version_id or "-") for o in outcomes],
        )


def _result(outcome: Outcome) -> str:
    if outcome.ok:
        return "ok"
    for word in (INTERRUPTED, NOT_STARTED):
        if outcome.detail.startswith(word):
            return word
    return "FAILED"


def _not_started(item: SecretSpec, emergency: bool) -> Outcome:
    """A secret an interrupted --all never reached; also said on stderr, as the
    interrupted one is, so it is seen with --json too."""
    import sys

    detail = f"{NOT_STARTED}: the run was interrupted before it; run `{_again(item, emergency)}`"
    print(f"{item.name}: {detail}", file=sys.stderr)
    return Outcome(item.name, False, None, detail)


def _interrupted(store: SecretStore, item: SecretSpec, mode: Mode, *, emergency: bool) -> Outcome:
    """Ctrl-C between two steps: say what is left, since the next run depends on it."""
    import sys

    pending = _pending(store, item)
    if mode == "service":
        state = "Secrets Manager carries on with the rotation; `babyshield secrets` shows it"
    elif pending is None:
        state = f"nothing was left pending; run `{_again(item, emergency)}` again"
    else:
        state = f"version {pending} {_what_now(store, item, True, emergency=emergency)}"
    print(f"{item.name}: {INTERRUPTED}; {state}", file=sys.stderr)
    return Outcome(item.name, False, pending, f"{INTERRUPTED}; {state}")


def _cancel(store: SecretStore, item: SecretSpec, *, as_json: bool) -> int:
    from functions.shared.rotation.driver import LocalRotationDriver
    from functions.shared.rotation.protocol import RotationInProgress
    from functions.shared.rotation.store import EMERGENCY_TAG

    # Read before the cancel, which drops the tag with the emergency it names.
    emergency = store.describe(item.secret_name).tags.get(EMERGENCY_TAG)
    try:
        cancelled = LocalRotationDriver(store=store).cancel(item.name)
    except RotationInProgress as exc:
        raise CommandError(str(exc), hint=f"babyshield rotate {item.name} --resume") from None
    if cancelled is None:
        detail = "no rotation in progress"
    else:
        detail = f"cancelled; version {cancelled} is no longer AWSPENDING"
        if item.kind == "iam-access-key":
            detail += (
                "; the access key it created stays active until the daily key sweep "
                "deactivates it (an hour after its creation at the earliest)"
            )
        if emergency == cancelled:
            detail += (
                "; it was an emergency rotation, so the leaked value still works: "
                f"run babyshield rotate {item.name} --emergency"
            )
    if as_json:
        _report([Outcome(item.name, True, cancelled, detail)], as_json=True, summary=False)
    else:
        print(f"{item.name}: {detail}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rotate",
        help="rotate a secret now (or --all); --emergency for a leak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", help="inventory name, e.g. db-app")
    parser.add_argument("--all", action="store_true", help="every secret in the inventory")
    parser.add_argument(
        "--emergency",
        action="store_true",
        help="a leak: the old value stops working at once (no overlap window)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish the rotation left unfinished (against AWS: one stopped after its promotion)",
    )
    parser.add_argument(
        "--cancel", action="store_true", help="drop a stuck AWSPENDING version instead"
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "local", "service"),
        default="auto",
        help="local: play Secrets Manager here; service: RotateSecret "
        "(auto: local against the local stack, which `make run` points the command at, "
        "or any AWS_ENDPOINT_URL)",
    )
    parser.add_argument(
        "--wait", type=float, default=300.0, help="seconds to wait for Secrets Manager"
    )
    parser.add_argument("--json", action="store_true", help="results as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="show the rotation step logs (on stderr)"
    )
    parser.set_defaults(func=_run)


def seed_partner_export_key(store: SecretStore, iam: Any) -> dict[str, str]:
    """A new access key of the partner-export user, stored as the secret's first value."""
    from functions.shared import names
    from functions.shared.inventory import spec
    from functions.shared.rotation.driver import seed_secret

    key = iam.create_access_key(UserName=names.PARTNER_EXPORT_USER)["AccessKey"]
    value = {
        "kind": "iam-access-key",
        "UserName": names.PARTNER_EXPORT_USER,
        "AccessKeyId": key["AccessKeyId"],
        "SecretAccessKey": key["SecretAccessKey"],
    }
    seed_secret(store, spec("iam-partner-export"), value)
    return value


def ensure_local_secrets(admin_conninfo: str, roles: RoleNames | None = None) -> list[str]:
    """Every inventory secret on the local stack, with rotation enabled; returns those created.

    `admin_conninfo` is the local cluster's superuser. A database secret that is
    missing gets a fresh password set on its login first (and LOGIN back, should an
    earlier run have left it fenced off), so the secret and the database agree from
    the start; one that exists is left alone (its password is
    the one the database holds). Safe to run on every start.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    from functions.shared import names
    from functions.shared.db.roles import PRODUCTION_ROLES, set_login_password
    from functions.shared.identity.jwt_keys import generate_jwt_secret_value
    from functions.shared.identity.webhooks import generate_webhook_secret_value
    from functions.shared.inventory import INVENTORY, spec
    from functions.shared.rotation import clients
    from functions.shared.rotation.driver import enable_rotation, seed_secret
    from functions.shared.rotation.generate import generate_password
    from functions.shared.rotation.store import SecretStore

    roles = roles or PRODUCTION_ROLES
    store = SecretStore(caller="babyshield-local")
    existing = set()
    for item in INVENTORY:
        try:
            store.describe(item.secret_name)
            existing.add(item.name)
        except store.client.exceptions.ResourceNotFoundException:
            pass
    created: list[str] = []
    target = conninfo_to_dict(admin_conninfo)
    endpoint = {
        "engine": "postgres",
        "host": str(target.get("host", "127.0.0.1")),
        "port": int(str(target.get("port", 5432))),
        "dbname": str(target.get("dbname", "postgres")),
    }
    logins = {"db-admin": roles.migrator, "db-readonly": roles.readonly_a, "db-app": roles.app_a}
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        for name in ("db-admin", "db-readonly", "db-app"):
            if name in existing:
                continue
            password = generate_password()
            set_login_password(conn, logins[name], password)
            # An emergency step that failed halfway in an earlier run may have left the
            # login fenced off (NOLOGIN); the secret seeded now must log in.
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(logins[name])))
            value: dict[str, Any] = {**endpoint, "username": logins[name], "password": password}
            if name != "db-admin":
                value["masterarn"] = store.describe(spec("db-admin").secret_name).arn
            seed_secret(store, spec(name), value)
            created.append(name)
    if "iam-partner-export" not in existing:
        iam = clients.iam()
        try:
            iam.create_user(UserName=names.PARTNER_EXPORT_USER)
        except iam.exceptions.EntityAlreadyExistsException:
            # No secret holds any of its keys: they are unusable leftovers of an old run.
            listed = iam.list_access_keys(UserName=names.PARTNER_EXPORT_USER)
            for old_key in listed["AccessKeyMetadata"]:
                iam.delete_access_key(
                    UserName=names.PARTNER_EXPORT_USER, AccessKeyId=old_key["AccessKeyId"]
                )
        seed_partner_export_key(store, iam)
        created.append("iam-partner-export")
    for name, make_value in (
        ("jwt-signing-key", generate_jwt_secret_value),
        ("webhook-signing-secret", generate_webhook_secret_value),
    ):
        if name not in existing:
            seed_secret(store, spec(name), json.loads(make_value()))
            created.append(name)
    for item in INVENTORY:
        enable_rotation(store, item)
    return created
