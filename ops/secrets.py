"""`babyshield secrets`: every inventory secret with its last rotation, age and due date,
whether its rotation settings match the inventory, and which webhook secret the
upstream feed signs with."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from functions.shared.errors import ServiceUnavailable
from functions.shared.inventory import API_KEY_PERIOD_DAYS, spec
from functions.shared.rotation.age import FEED_SIGNING_SECRET
from ops.console import CommandError, cli_caller, fail, print_json, print_table

if TYPE_CHECKING:
    from functions.shared.identity.webhook_signers import SignerState
    from functions.shared.rotation.age import SecretAge
    from functions.shared.rotation.store import SecretStore


def _run(args: argparse.Namespace) -> int:
    from functions.shared.rotation.age import secret_ages
    from functions.shared.rotation.store import SecretStore

    store = SecretStore(caller=cli_caller())
    ages = secret_ages(store)
    unread = [age.problem for age in ages if age.problem]
    read_none = bool(ages) and len(unread) == len(ages)
    # With not one secret readable (no credentials, no stack), the database's login
    # secret is not either: the failure below names the cause, not the database. A
    # database named by URL (the local stack) needs no secret: its keys are read.
    if args.api_keys and not (read_none and _login_is_a_secret()):
        ages += _api_key_ages()
    signer, signer_problem = _feed_signer(store)
    if args.json:
        rows = [age.as_json() for age in ages]
        for row in rows:
            # Every row has the same keys; only the webhook secret's has a value here.
            row["feed_signs_with"] = (
                _signer_json(signer, signer_problem) if row["name"] == FEED_SIGNING_SECRET else None
            )
        print_json(rows)
    else:
        print_table(
            (
                "NAME",
                "KIND",
                "PERIOD",
                "LAST ROTATED",
                "AGE (DAYS)",
                "NEXT DUE",
                "OVERDUE",
                "PENDING",
                "ROTATION",
            ),
            [
                (
                    age.name,
                    age.kind,
                    f"{age.period_days}d",
                    age.as_json()["last_rotated"] or f"- ({age.problem})",
                    "-" if age.age_days is None else f"{age.age_days:.1f}",
                    age.as_json()["next_due"] or "-",
                    "OVERDUE" if age.overdue else "no",
                    f"{age.pending} (stuck)" if age.stuck else age.pending or "-",
                    age.rotation_problem or "-",
                )
                for age in ages
            ],
        )
    if read_none:
        # Not one secret could be read: the command failed, and a table of dashes
        # must not pass for an answer in a script, API keys beside it or not. (A
        # missing secret among readable ones is an answer: OVERDUE, and
        # --fail-on-overdue for scripts.)
        problems = sorted(set(unread))
        return fail(
            f"could not read any secret ({', '.join(problems)})",
            hint="check AWS credentials and region, or start the local stack (`make run`)",
        )
    if not args.json:
        note = _signer_note(signer, signer_problem)
        if note:
            print(f"\n{note}")
    pending = [age.name for age in ages if age.pending]
    if pending and not args.json:
        print(
            f"\nrotation pending for {', '.join(pending)}: running now, or stopped halfway;"
            " on the local stack `babyshield rotate NAME --resume` finishes one that stopped,"
            " in AWS see the RUNBOOK's 'A rotation failed'",
        )
    drift = [age.name for age in ages if age.rotation_problem]
    if drift and not args.json:
        print(
            f"\nrotation settings differ from the inventory for {', '.join(drift)} (ROTATION):"
            " Secrets Manager will not rotate them in time; see the RUNBOOK's"
            " 'Rotation switched off or re-scheduled'",
        )
    return 1 if args.fail_on_overdue and any(age.overdue for age in ages) else 0


def _login_is_a_secret() -> bool:
    """Whether the read-only tier logs in with a Secrets Manager secret (not a URL)."""
    from functions.shared.db.credentials import SecretCredentials, source_for
    from functions.shared.settings import get_settings

    return isinstance(source_for("readonly", get_settings()), SecretCredentials)


def _api_key_ages() -> list[SecretAge]:
    from functions.shared.db.pools import close_pools
    from functions.shared.rotation.age import api_key_ages

    try:
        return api_key_ages()
    except ServiceUnavailable as exc:
        raise CommandError(
            "cannot read API keys: the database is unavailable",
            hint="check `babyshield db` connectivity, or run without --api-keys",
        ) from exc
    finally:
        # A pool that cannot connect goes on retrying in its own threads, and logging,
        # after the command has answered.
        close_pools()


def _feed_signer(store: SecretStore) -> tuple[SignerState | None, str | None]:
    """When each live version of the webhook secret last signed an accepted delivery,
    or why that could not be read."""
    from functions.shared.rotation.age import signer_of

    try:
        metadata = store.describe(spec(FEED_SIGNING_SECRET).secret_name)
    except Exception:  # noqa: BLE001 - the table already says why the secret is unreadable
        return None, None
    try:
        return signer_of(metadata), None
    except Exception as exc:  # noqa: BLE001 - a note beside the table, never its failure
        return None, type(exc).__name__


def _at(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _signer_json(signer: SignerState | None, problem: str | None) -> dict[str, Any] | None:
    if signer is None:
        return None if problem is None else {"problem": problem}
    return {
        "stage": _signer_stage(signer),
        "current_version": signer.current_version,
        "current_signed_at": _at(signer.current_signed_at),
        "previous_version": signer.previous_version,
        "previous_signed_at": _at(signer.previous_signed_at),
        # Whichever version signed the last accepted delivery, live or retired.
        "last_version": signer.last_version,
        "last_signed_at": _at(signer.last_signed_at),
    }


def _signer_stage(signer: SignerState) -> str | None:
    """What the feed's last accepted delivery was signed with: AWSCURRENT, AWSPREVIOUS,
    "retired" (a version no longer accepted), or None (no delivery recorded)."""
    if signer.sender_on_retired:
        return "retired"
    if signer.sender_on_old_secret:
        return "AWSPREVIOUS"
    if signer.current_signed_at is not None or signer.last_version is not None:
        return "AWSCURRENT"
    return None


def _signer_note(signer: SignerState | None, problem: str | None) -> str | None:
    if signer is None:
        if problem is None:
            return None
        return f"{FEED_SIGNING_SECRET}: could not read which secret the feed signs with ({problem})"
    stage = _signer_stage(signer)
    if stage == "retired":
        return (
            f"{FEED_SIGNING_SECRET}: the feed's last accepted delivery "
            f"({_at(signer.last_signed_at)}) was signed with a secret no longer accepted "
            "(an emergency rotation retires the old one at once): every delivery it signs "
            "with that is refused; give it the current one"
        )
    if stage == "AWSPREVIOUS":
        return (
            f"{FEED_SIGNING_SECRET}: the feed still signs with the previous secret (last accepted "
            f"{_at(signer.previous_signed_at or signer.last_signed_at)}): give it the current "
            "one; until a delivery signed with it is accepted, a routine rotation is refused"
        )
    if stage == "AWSCURRENT":
        return (
            f"{FEED_SIGNING_SECRET}: the feed signs with the current secret "
            f"(last accepted {_at(signer.current_signed_at or signer.last_signed_at)})"
        )
    return None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "secrets",
        help="list the secret inventory with rotation ages and due dates",
        description="Every secret of the inventory with its age, last and next rotation, "
        "and what needs on-call (overdue, a rotation left unfinished, rotation switched "
        "off, scheduled less often than the inventory's period or by another function, "
        "the feed still signing with the previous webhook secret or a retired one; a "
        "`babyshield webhook send` is not the feed). Reads metadata, never "
        "a secret value.",
    )
    parser.add_argument("--json", action="store_true", help="a JSON list of objects")
    parser.add_argument(
        "--api-keys",
        action="store_true",
        help=f"also list partner API keys (database), due after {API_KEY_PERIOD_DAYS} days",
    )
    parser.add_argument(
        "--fail-on-overdue", action="store_true", help="exit 1 when any secret is overdue"
    )
    parser.set_defaults(func=_run)
