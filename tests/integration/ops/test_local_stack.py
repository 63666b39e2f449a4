"""The local stack end to end: the attack flow of the design brief, for real, on one machine.

flood from one address -> WAF BLOCK records in the log group -> the blocked-requests
alarm fires into the real responder -> the address lands in the auto-block IP set ->
its next request is refused -> the expiry sweep removes it -> it is allowed again.
The attacker is 127.0.0.2 (all of 127/8 is loopback) so the admin range, 127.0.0.1,
stays allowlisted and is never blocked.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from ops.cli import main
from ops.local_stack import DEFAULT_RATE_LIMIT, SWEEP_SECONDS_VARIABLE, RolesInUse, local_stack
from ops.local_state import read_state
from tests.support.local_stack import running_stack, stack_options, stack_request
from tests.support.postgres import private_database

ATTACKER = "127.0.0.2"
RATE_LIMIT = 5
# The expiry sweep's period where a test waits for it (5 minutes as `make run` starts).
SHORT_SWEEP_SECONDS = 2


@pytest.fixture
def stack(pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The local stack as `make run` starts it (the WebACL's own rate limit)."""
    monkeypatch.chdir(tmp_path)  # .babyshield/local.json goes here
    with running_stack(pg_cluster, DEFAULT_RATE_LIMIT) as state:
        yield state


@pytest.fixture
def flood_stack(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A small rate limit and alarm threshold, so a flood takes a dozen requests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "3")
    with running_stack(pg_cluster, RATE_LIMIT) as state:
        yield state


def get(state: dict[str, Any], path: str, source: str = "127.0.0.1", **headers: str) -> int:
    return stack_request(state, "GET", path, source=source, headers=headers, timeout=10)[0]


def shift_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Everything that decides expiry looks `seconds` into the future."""
    from functions.waf_responder import sweep
    from ops import local_edge

    real = time.time
    clock = SimpleNamespace(time=lambda: real() + seconds, monotonic=time.monotonic)
    monkeypatch.setattr(sweep, "time", clock)
    monkeypatch.setattr(local_edge, "time", clock)


def test_flood_alarm_block_refuse_sweep_allow(flood_stack, monkeypatch, capsys):
    stack = flood_stack
    # Given the running local stack writing its state for scripts
    state = read_state()
    assert state is not None
    assert state["api_url"] == stack["api_url"]
    assert {
        "api_url",
        "aws_endpoint_url",
        "region",
        "database_url",
        "users",
        "api_keys",
        "webhook_secret",
    } <= set(state)
    assert state["webhook_secret"].startswith("whsec_")

    # When one address floods the API past the rate rule
    statuses = [get(stack, "/health", ATTACKER) for _ in range(RATE_LIMIT + 6)]
    assert statuses[:RATE_LIMIT] == [200] * RATE_LIMIT
    assert set(statuses[RATE_LIMIT:]) == {429}

    # And the blocked-requests alarm fires into the real responder
    assert main(["local", "alarm", "waf-blocked-requests"]) == 0
    message = capsys.readouterr().out
    assert ATTACKER in message
    assert "babyshield waf unblock" in message

    # Then the address is in the auto-block IP set and its next request is refused
    assert get(stack, "/health", ATTACKER) == 403
    # And everyone else, the admin range included, is unaffected
    assert get(stack, "/health", "127.0.0.1") == 200

    # And `babyshield waf list` shows the block with its expiry
    assert main(["waf", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = listed if isinstance(listed, list) else listed.get("blocks", [])
    mine = [row for row in rows if row["ip"].startswith(ATTACKER)]
    assert mine
    assert mine[0]["expires"]

    # When the expiry sweep runs after the block has expired
    shift_clock(monkeypatch, 5 * 3600)
    from functions.waf_responder.events import scheduled_sweep_event
    from functions.waf_responder.handler import lambda_handler as responder
    from ops.apigw import LocalLambdaContext

    swept = responder(scheduled_sweep_event(), LocalLambdaContext(function_name="waf-responder"))
    assert any(ip.startswith(ATTACKER) for ip in swept["removed"])

    # Then the address is allowed again
    assert get(stack, "/health", ATTACKER) == 200


def test_an_expired_block_leaves_the_local_edge_within_one_sweep_period(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The local stack runs the responder's expiry sweep on its own, every period,
    as the 5-minute EventBridge schedule does in AWS (cdk/detection.py, ExpirySweep):
    a `--for 1m` block stops refusing its address within one period of expiring,
    instead of for the rest of the session. BABYSHIELD_LOCAL_SWEEP_SECONDS shortens
    the period, here to seconds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SWEEP_SECONDS_VARIABLE, str(SHORT_SWEEP_SECONDS))
    expiring = "127.0.0.4"
    with running_stack(pg_cluster, DEFAULT_RATE_LIMIT) as stack:
        # Given a one-minute block that refuses its address
        assert (
            main(["waf", "block", expiring, "--reason", "r", "--for", "1m", "--by", "alice"]) == 0
        )
        capsys.readouterr()
        assert get(stack, "/health", expiring) == 403

        # When the block has expired (the clock moved on past its minute)
        shift_clock(monkeypatch, 120)

        # Then within one sweep period the address is admitted again, with no sweep run
        # by hand
        deadline = time.monotonic() + 3 * SHORT_SWEEP_SECONDS + 10
        status = get(stack, "/health", expiring)
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            status = get(stack, "/health", expiring)
        assert status == 200, f"{expiring}: its block expired, and the edge still refuses it"


def post_json(state: dict[str, Any], path: str, body: dict[str, Any], source: str) -> int:
    headers = {"Content-Type": "application/json"}
    sent = json.dumps(body)
    return stack_request(
        state, "POST", path, source=source, body=sent, headers=headers, timeout=10
    )[0]


def test_failed_sign_ins_alarm_blocks_the_guesser(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Flow 3 for the sign-in alarm: the API's refusals reach its log group, as in AWS."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAILED_SIGN_INS_THRESHOLD", "3")
    with running_stack(pg_cluster, DEFAULT_RATE_LIMIT) as stack:
        # Given one address guessing passwords (another account's user guessing too little)
        # pragma: allowlist nextline secret
        guess = {"email": "parent@demo.babyshield.local", "password": "not-the-password"}
        for _ in range(4):
            assert post_json(stack, "/auth/login", guess, ATTACKER) in (401, 429)
        assert post_json(stack, "/auth/login", guess, "127.0.0.3") == 401
        # When the failed-sign-ins alarm fires into the real responder
        assert main(["local", "alarm", "failed-sign-ins"]) == 0
        message = capsys.readouterr().out
        # Then the guesser is blocked and refused; the one-off caller is not
        assert ATTACKER in message
        assert "127.0.0.3" not in message
        assert get(stack, "/health", ATTACKER) == 403
        assert get(stack, "/health", "127.0.0.3") == 200


def test_printed_demo_commands_work(stack):
    # The README and banner promise these exact credentials work on the local stack.
    user_key = next(k["key"] for k in stack["api_keys"] if k["purpose"] == "demo")
    assert get(stack, "/recalls?q=crib", **{"X-API-Key": user_key}) == 200
    assert get(stack, "/health") == 200


def test_a_second_stack_on_the_same_roles_is_refused_and_the_first_keeps_working(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Roles are server-wide: a second stack would re-password the first one's logins."""
    monkeypatch.chdir(tmp_path)
    with private_database(pg_cluster) as database:
        options = stack_options(database)
        with local_stack(options) as first:
            user_key = next(k["key"] for k in first["api_keys"] if k["purpose"] == "demo")
            with (
                pytest.raises(RolesInUse, match="another local stack is running"),
                local_stack(options),
            ):
                pass
            # The refusal changed nothing: the first stack's tiers still log in
            assert get(first, "/recalls?q=crib", **{"X-API-Key": user_key}) == 200
        # Once the first has stopped, the roles are free again
        with local_stack(options) as again:
            assert get(again, "/health") == 200


def test_audit_passes_against_the_local_stack(stack, capsys):
    # The on-call audit against the stack as started: every check passes or does not apply
    code = main(["audit", "--url", stack["api_url"], "--json"])
    # The API runs in this process and logs to the same stdout: take the report only.
    out = capsys.readouterr().out
    checks = json.loads(out[out.index('{\n  "checks"') :])["checks"]
    failed = [c for c in checks if c["status"] == "FAIL"]
    assert code == 0, failed
    statuses = {c["name"]: c["status"] for c in checks}
    assert statuses["rate_limiting"] == "PASS"
    # Given AWS access (the stack's moto server and database), those checks run too
    assert statuses["secret_ages"] == "PASS"
    assert statuses["database_users"] == "PASS"


def test_audit_fails_on_a_weakened_database_user(stack, capsys):
    # Given someone raised the read-only login's connection limit by hand
    import psycopg
    import psycopg.sql

    from ops.audit_aws import roles_in_use

    login = roles_in_use().readonly_a
    with psycopg.connect(stack["environment"]["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} CONNECTION LIMIT 500").format(
                psycopg.sql.Identifier(login)
            )
        )
    # When the audit runs
    code = main(["audit", "--url", stack["api_url"], "--json", "--no-aws"])
    capsys.readouterr()
    assert code == 0  # the HTTP checks alone cannot see it
    code = main(["audit", "--url", stack["api_url"], "--json"])
    out = capsys.readouterr().out
    checks = json.loads(out[out.index('{\n  "checks"') :])["checks"]
    database = next(c for c in checks if c["name"] == "database_users")
    # Then the database check names the login and the limit
    assert code == 1
    assert database["status"] == "FAIL"
    assert login in database["detail"]
    assert "500" in database["detail"]


def test_the_running_stack_keeps_its_startup_state_out_of_full_collections(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    # Given no frozen objects before the stack starts
    monkeypatch.chdir(tmp_path)
    assert gc.get_freeze_count() == 0

    # When the stack runs, what it started with is frozen: full collections skip it
    with running_stack(pg_cluster, DEFAULT_RATE_LIMIT):
        assert gc.get_freeze_count() > 10_000

    # And once it stops, the process collects as before
    assert gc.get_freeze_count() == 0


def test_the_never_block_list_oncall_edits_in_ssm_protects_an_address_locally(stack, capsys):
    """RUNBOOK's step for an auto-blocked customer adds the address to the never-block
    list in SSM, with no deploy. The local stack created that parameter but read its
    lists from the environment, so the step, practised on `make run`, changed nothing:
    `babyshield waf block` still blocked the protected address."""
    import boto3

    from functions.shared import names

    ssm = boto3.client("ssm", endpoint_url=stack["aws_endpoint_url"])
    ssm.put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER, Value="198.51.100.0/28", Type="String", Overwrite=True
    )
    capsys.readouterr()

    code = main(["waf", "block", "198.51.100.7", "--reason", "scan", "--by", "alice"])

    assert code == 1
    assert "never-block list" in capsys.readouterr().err


def test_a_database_url_without_the_rights_to_set_up_the_stack_says_so(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """DATABASE_URL must name a superuser (docs/DATABASE.md). An ordinary login (a
    tier's, a developer's own) connects and then may not create the stack's roles and
    tables: one line naming DATABASE_URL and what it needs, not an "unexpected
    failure" to report as a bug."""
    monkeypatch.chdir(tmp_path)
    with private_database(pg_cluster) as database:
        monkeypatch.setenv("DATABASE_URL", database.tier("app"))
        code = main(["local", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "unexpected failure" not in err, err
    assert "DATABASE_URL's login may not set up the stack (InsufficientPrivilege)" in err
    assert "superuser" in err
