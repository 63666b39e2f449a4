"""`babyshield secrets`: every inventory secret with its last rotation, age and due date."""

from __future__ import annotations

import argparse

from functions.shared.errors import ServiceUnavailable
from functions.shared.inventory import API_KEY_PERIOD_DAYS
from ops.console import CommandError, cli_caller, fail, print_json, print_table


def _run(args: argparse.Namespace) -> int:
    from functions.shared.rotation.age import api_key_ages, secret_ages
    from functions.shared.rotation.store import SecretStore

    ages = secret_ages(SecretStore(caller=cli_caller()))
    if args.api_keys:
        try:
            ages += api_key_ages()
        except ServiceUnavailable as exc:
            raise CommandError(
                "cannot read API keys: the database is unavailable",
                hint="check `babyshield db` connectivity, or run without --api-keys",
            ) from exc
    if args.json:
        print_json([age.as_json() for age in ages])
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
                    age.pending or "-",
                )
                for age in ages
            ],
        )
    if ages and all(age.problem for age in ages):
        # Not one secret could be read: the command failed, and a table of dashes
        # must not pass for an answer in a script. (A missing secret among readable
        # ones is an answer: OVERDUE, and --fail-on-overdue for scripts.)
        problems = sorted({str(age.problem) for age in ages})
        return fail(
            f"could not read any secret ({', '.join(problems)})",
            hint="check AWS credentials and region, or start the local stack (`make run`)",
        )
    pending = [age.name for age in ages if age.pending]
    if pending and not args.json:
        print(
            f"\nrotation pending for {', '.join(pending)}: running now, or stopped halfway;"
            " on the local stack `babyshield rotate NAME --resume` finishes one that stopped,"
            " in AWS see the RUNBOOK's 'A rotation failed'",
        )
    return 1 if args.fail_on_overdue and any(age.overdue for age in ages) else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "secrets", help="list the secret inventory with rotation ages and due dates"
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
