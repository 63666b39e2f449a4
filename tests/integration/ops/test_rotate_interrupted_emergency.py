"""`babyshield rotate --all --emergency` stopped halfway: on-call must learn every
secret still to rotate, and each command it is told to run must stay an emergency.

Real parts: moto over HTTP for Secrets Manager and IAM, the password-checking
PostgreSQL cluster for the database tiers, the real rotation handlers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.inventory import INVENTORY, spec
from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
from functions.shared.rotation.store import SecretStore
from ops.cli import main
from tests.integration.rotation.conftest import (  # noqa: F401
    PartnerUser,
    partner_user,
    store,
    webhook_secret,
)
from tests.integration.rotation.database_fixtures import (  # noqa: F401
    DatabaseSecrets,
    db_secrets,
    rotation_db,
)

# The rotation tests' fixtures: secrets on moto, the IAM user, the database tiers.
from tests.support.cli import set_local_cli_environment


@pytest.fixture(autouse=True)
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_local_cli_environment(monkeypatch)


@pytest.fixture
def every_secret(
    db_secrets: DatabaseSecrets,  # noqa: F811
    partner_user: PartnerUser,  # noqa: F811
    webhook_secret: str,  # noqa: F811
    store: SecretStore,  # noqa: F811
) -> None:
    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value()))


@contextmanager
def ctrl_c_in(secret: str, after_step: str) -> Iterator[None]:
    """Ctrl-C once `after_step` of `secret` has run, as an operator's lands mid-run."""
    real = LocalRotationDriver._invoke

    def invoke(self: LocalRotationDriver, handler: Any, item: Any, step: str, *rest: Any) -> int:
        attempts = real(self, handler, item, step, *rest)  # type: ignore[arg-type]
        if item.name == secret and step == after_step:
            raise KeyboardInterrupt
        return attempts

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalRotationDriver, "_invoke", invoke)
        yield


def has_previous(store: SecretStore, name: str) -> bool:  # noqa: F811
    stages = store.describe(spec(name).secret_name).stages
    return any("AWSPREVIOUS" in labels for labels in stages.values())


def test_an_interrupted_emergency_names_every_secret_left_and_keeps_it_an_emergency(
    every_secret: None,
    store: SecretStore,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the emergency rotation of everything, interrupted inside the IAM key's
    with ctrl_c_in("iam-partner-export", "setSecret"):
        code = main(["rotate", "--all", "--emergency", "--json"])
    captured = capsys.readouterr()
    pending = store.describe(spec("iam-partner-export").secret_name).pending_elsewhere()
    assert code == 130
    assert pending is not None

    # Then the JSON still answers for every secret of the inventory, in the order they
    # ran: the database admin first, then the inventory's order
    results = json.loads(captured.out)
    assert [r["name"] for r in results] == ["db-admin"] + [
        item.name for item in INVENTORY if item.name != "db-admin"
    ]
    done = {r["name"] for r in results if r["ok"]}
    assert done == {"db-readonly", "db-app", "db-admin", "jwt-signing-key"}
    by_name = {r["name"]: r for r in results}
    assert by_name["iam-partner-export"]["version_id"] == pending
    # And the secret never reached is named, with the command that keeps the emergency
    left = by_name["webhook-signing-secret"]
    assert left["ok"] is False
    assert left["detail"].startswith("not started")
    assert "`babyshield rotate webhook-signing-secret --emergency`" in left["detail"]
    assert "webhook-signing-secret: not started" in captured.err
    assert (
        f"iam-partner-export: INTERRUPTED; version {pending} left AWSPENDING: finish it with "
        "`babyshield rotate iam-partner-export --resume`" in captured.err
    )

    # When on-call runs what it was told
    assert main(["rotate", "iam-partner-export", "--resume"]) == 0
    assert main(["rotate", "webhook-signing-secret", "--emergency"]) == 0

    # Then both finished as emergencies: no old value is kept for an overlap
    assert not has_previous(store, "iam-partner-export")
    assert not has_previous(store, "webhook-signing-secret")


def test_the_text_summary_of_an_interrupted_run_lists_what_did_not_run(
    every_secret: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ctrl_c_in("jwt-signing-key", "createSecret"):
        assert main(["rotate", "--all", "--emergency"]) == 130
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1] for line in out.splitlines()[-6:]}
    assert table == {
        "db-readonly": "ok",
        "db-app": "ok",
        "db-admin": "ok",
        "jwt-signing-key": "INTERRUPTED",
        "iam-partner-export": "not",
        "webhook-signing-secret": "not",  # pragma: allowlist secret
    }


def test_a_failed_emergency_says_to_rerun_it_as_an_emergency(
    partner_user: PartnerUser,  # noqa: F811
    store: SecretStore,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the partner user is gone, so no new access key can be made
    iam = boto3.client("iam")
    iam.delete_access_key(UserName=partner_user.name, AccessKeyId=partner_user.first_key_id)
    iam.delete_user(UserName=partner_user.name)
    # When its emergency rotation fails
    assert main(["rotate", "iam-partner-export", "--emergency", "--json"]) == 1
    [result] = json.loads(capsys.readouterr().out)
    # Then the rerun it names is an emergency one, not a routine rotation that would
    # keep the leaked key usable through its grace window
    assert "nothing was stored" in result["detail"]
    assert "`babyshield rotate iam-partner-export --emergency` again" in result["detail"]
