"""What on-call met walking README.md's session and docs/RUNBOOK.md against `make run`.

Each docstring says what on-call experienced before the fix. Real parts: the moto
server over HTTP (Secrets Manager, IAM, SSM, DynamoDB, WAF), the real rotation
handlers and block operations, `babyshield` through ops.cli.main.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import boto3
import pytest

from functions.shared import blocks, names
from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
from functions.shared.rotation.store import EMERGENCY_TAG, SecretStore
from ops.cli import main
from tests.integration.rotation.conftest import (  # noqa: F401
    PartnerUser,
    partner_user,
    store,
    webhook_secret,
)
from tests.support.cli import set_local_cli_environment
from tests.support.waf import WafResources, clear_caches, create_resources, ip_set_addresses


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_local_cli_environment(monkeypatch)


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    yield create_resources(monkeypatch)
    clear_caches()


@contextmanager
def ctrl_c_before(secret: str, step: str) -> Iterator[None]:
    """Ctrl-C as `step` of `secret` starts, before it has stored anything."""
    real = LocalRotationDriver._invoke

    def invoke(self: LocalRotationDriver, handler: Any, item: Any, name: str, *rest: Any) -> int:
        if item.name == secret and name == step:
            raise KeyboardInterrupt
        return real(self, handler, item, name, *rest)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalRotationDriver, "_invoke", invoke)
        yield


def tags(store: SecretStore, name: str) -> dict[str, str]:  # noqa: F811
    return store.describe(spec(name).secret_name).tags


# --- babyshield secrets on the local stack --------------------------------------------


def test_secrets_dates_a_secret_by_when_its_value_was_made_on_the_local_stack(
    cli_environment: None,
    store: SecretStore,  # noqa: F811
    webhook_secret: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On `make run`, `babyshield secrets` shows LAST ROTATED = the moment the command
    runs and AGE 0.0 (even `-0.0`) for every secret, whenever it was made or rotated:
    secret_age() dates AWSCURRENT by ListSecretVersionIds' CreatedDate, which moto
    answers with time.time() for every version. So RUNBOOK "A secret leaked" step 4
    ("`babyshield secrets` shows an age of about 0 for each rotated secret") cannot tell
    a rotated secret from one that was not, and the audit's `secret_ages` check always
    says "0/90 days". (The JWT guard already works around the same moto answer with
    the promotion tag; secret_age does not.)"""
    made = time.time()
    time.sleep(3)
    assert main(["secrets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    last = datetime.fromisoformat(rows["webhook-signing-secret"]["last_rotated"]).timestamp()
    assert last <= made + 1, (
        f"LAST ROTATED is {time.time() - last:.0f}s ago; the value was made "
        f"{time.time() - made:.0f}s ago"
    )


# --- emergency rotation: the tag an interrupted or failed run leaves -------------------


def test_an_emergency_interrupted_before_anything_was_stored_leaves_no_emergency_tag(
    cli_environment: None,
    store: SecretStore,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C early in `babyshield rotate jwt-signing-key --emergency` (reproduced on
    make run with `timeout -s INT 1.6`) prints "INTERRUPTED; nothing was left pending",
    but the `babyshield:emergency-rotation` tag the run set first stays on the secret,
    naming a version that does not exist. Nothing removes it: not `--cancel` ("no
    rotation in progress"), not a later routine rotation (checked on make run), so
    RUNBOOK step 4's check ("the emergency tag is gone") keeps showing an emergency
    that never happened, and RUNBOOK:21-22 says a refused or cancelled emergency
    removes its tag."""
    name = "jwt-signing-key"
    seed_secret(store, spec(name), json.loads(generate_jwt_secret_value()))
    with ctrl_c_before(name, "createSecret"):
        assert main(["rotate", name, "--emergency"]) == 130
    err = capsys.readouterr().err
    assert "nothing was left pending" in err
    assert EMERGENCY_TAG not in tags(store, name), (
        f"the {EMERGENCY_TAG} tag is left on the secret after an interrupted emergency "
        "that stored nothing"
    )


def test_a_failed_emergency_that_stored_nothing_removes_its_tag(
    cli_environment: None,
    partner_user: PartnerUser,  # noqa: F811
    store: SecretStore,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same leftover after a failure: the partner user's keys cannot be made, the
    command says "nothing was stored", but the emergency tag stays. In AWS the same
    command removes the tag when RotateSecret is refused (ops/rotate.py
    rotate_via_service); locally it does not, so the two paths disagree and the
    RUNBOOK's "the emergency tag is gone" check misleads."""
    iam = boto3.client("iam")
    iam.delete_access_key(UserName=partner_user.name, AccessKeyId=partner_user.first_key_id)
    iam.delete_user(UserName=partner_user.name)
    assert main(["rotate", "iam-partner-export", "--emergency"]) == 1
    assert "nothing was stored" in capsys.readouterr().out
    assert EMERGENCY_TAG not in tags(store, "iam-partner-export")


# --- Ctrl-C before the first secret ------------------------------------------------------


def test_ctrl_c_before_the_first_secret_still_names_every_secret_left_to_rotate(
    cli_environment: None,
    store: SecretStore,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`timeout -s INT 2 babyshield rotate --all --emergency` on make run sometimes
    exits 130 with no line at all (the Ctrl-C lands while the command sets up, after
    "(using the local stack ...)" and before db-admin starts: ops/cli.py main's
    `except KeyboardInterrupt: return 130`). RUNBOOK:56-60 promises that exit 130
    names every secret still to rotate with its `babyshield rotate NAME --emergency`;
    here on-call was told nothing and could not know that no secret was rotated.
    Simulated by a Ctrl-C while the run chooses where to rotate, before any secret."""
    import ops.rotate

    def interrupted(*_: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(ops.rotate, "choose_mode", interrupted)
    assert main(["rotate", "--all", "--emergency"]) == 130
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "babyshield rotate db-admin --emergency" in said, (
        f"exit 130 and nothing said; output was {said!r}"
    )


# --- the never-block list ----------------------------------------------------------------


def test_a_malformed_never_block_list_says_which_entry_is_wrong_and_what_to_do(
    waf: WafResources,
    aws: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """RUNBOOK "A legitimate customer was auto-blocked" step 3 has on-call edit
    /babyshield/never-block-cidrs by hand. A tired `198.51.100.5/28` (host bits) makes
    the list malformed, which stops every block (documented). But `babyshield waf
    block` then says "cannot read the protected address list ...: nothing is blocked
    until it can" - the list reads fine, it does not parse - with no `next:` line and
    without the bad entry, so on-call looks at IAM and the network instead of fixing
    one character. The parse error ("invalid CIDR ... '198.51.100.5/28'") is swallowed
    in functions/shared/blocks.py read_cidrs."""
    ssm = boto3.client("ssm")
    ssm.put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER,
        Value="198.51.100.5/28",
        Type="String",
        Overwrite=True,
    )
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", names.NEVER_BLOCK_PARAMETER)
    clear_caches()
    code = main(["waf", "block", "203.0.113.7", "--reason", "scan", "--by", "alice"])
    err = capsys.readouterr().err
    assert code == 1
    assert ip_set_addresses(waf, 4) == []
    assert "198.51.100.5/28" in err, err
    assert "next:" in err, err


# --- unblock twice ------------------------------------------------------------------------


def test_a_second_unblock_within_the_same_second_is_not_a_second_release(
    waf: WafResources,
) -> None:
    """`DELETE /admin/blocks/203.0.113.50` sent twice within one second (a retry, a
    double-click) answered 204 both times on make run, and each wrote a `waf_unblock`
    audit row; one second later the same request answers 404. The same holds for
    `babyshield waf unblock` run twice by the same actor: the second says "unblocked"
    and exits 0 instead of "not blocked" and 1. blocks.unblock takes a row released
    by the same actor at the same int(time) for "this call's own release" (the
    released_here() check meant for a retried conditional write inside one call)."""
    now = float(int(time.time()))  # the start of a second: both unblocks fall in it
    blocks.block(["203.0.113.50"], reason="scan", duration_seconds=3600, actor="alice", now=now)
    first = blocks.unblock(["203.0.113.50"], actor="alice", now=now + 0.1)
    assert [b.ip for b in first.changed] == ["203.0.113.50/32"]
    second = blocks.unblock(["203.0.113.50"], actor="alice", now=now + 0.6)
    assert second.changed == [], "the already released block was released (and audited) again"
    assert second.not_found == ["203.0.113.50/32"]
