"""`babyshield` at 3 a.m.: bad input, a missing stack, a failure halfway.

Real parts: the moto server over HTTP (with the fault proxy of tests/support/aws_faults.py
in front where a call must fail), the real block operations, `babyshield` through
ops.cli.main or a fresh process.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import boto3
import pytest

from functions.shared import names
from ops.cli import main
from tests.support.aws_faults import FAIL, PASS, faulty_aws_endpoint, refuse
from tests.support.waf import WafResources, clear_caches, create_resources, ip_set_addresses

ROOT = Path(__file__).resolve().parents[3]
FEED_SIGNING_VALUE = "whsec_" + base64.b64encode(b"k" * 24).decode()


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[WafResources]:
    monkeypatch.chdir(tmp_path)  # no .babyshield/local.json of another stack
    yield create_resources(monkeypatch)
    clear_caches()


def run_cli(*args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """`babyshield ARGS` in a fresh process, as on-call types it: a shell with no AWS
    credentials anywhere (the session expired), no local stack in `cwd`, and AWS calls
    aimed at a closed loopback port unless `environment` says otherwise."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "PYTHONPATH": str(ROOT),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-credentials"),
        "AWS_CONFIG_FILE": str(cwd / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- waf block: a failure halfway ----------------------------------------------------


def test_waf_block_failing_after_its_first_registry_write_names_what_was_blocked(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`babyshield waf block A B` where DynamoDB refuses B's write after A's went in:
    on-call reads which address is blocked now (A, audited) and that the WAF IP sets
    were not updated for it, not only "1 of 2 writes took effect"."""
    second = "198.51.100.9"

    def rule(target: str, body: bytes) -> str:
        if target.endswith(".PutItem") and second.encode() in body:
            return FAIL
        return PASS

    with faulty_aws_endpoint(monkeypatch) as faults:
        clear_caches()
        faults.rule = rule
        code = main(
            ["waf", "block", "203.0.113.7", second, "--reason", "scanner", "--by", "oncall"]
        )
        # The registry holds A's block; the IP sets were not synced after it.
        ip_set_after = ip_set_addresses(waf, 4)
    out, err = capsys.readouterr()
    assert code == 1
    assert "1 of 2 writes" in err
    assert ip_set_after == []
    # What was and was not done, by address, in what on-call reads (the JSON audit
    # lines on stderr are for CloudWatch, not a person).
    said = out + "".join(line for line in err.splitlines(True) if not line.startswith("{"))
    assert "203.0.113.7" in said, f"the blocked address is not named: {said!r}"
    assert "WAF" in said or "sweep" in said, f"not said that the IP sets wait: {said!r}"


# --- waf block without credentials / endpoint -----------------------------------------


def test_waf_block_without_credentials_says_so_not_that_the_allowlist_is_broken(
    tmp_path: Path,
) -> None:
    """A shell whose credentials are gone (an expired `aws sso login`): `waf block`
    names the missing credentials as `waf list` does, not the protected address list
    it could not read, which is fine and which on-call would go and repair."""
    # The deployed lists, as _deployed_protected_lists names them against AWS.
    lists = {
        "ADMIN_ALLOWED_CIDRS_PARAMETER": names.ADMIN_ALLOWLIST_PARAMETER,
        "NEVER_BLOCK_CIDRS_PARAMETER": names.NEVER_BLOCK_PARAMETER,
    }
    listed = run_cli("waf", "list", cwd=tmp_path, **lists)
    assert listed.returncode == 1
    assert "no AWS credentials found" in listed.stderr

    blocked = run_cli(
        "waf",
        "block",
        "203.0.113.7",
        "--reason",
        "scanner",
        "--by",
        "oncall",
        cwd=tmp_path,
        **lists,
    )
    assert blocked.returncode == 1
    assert "Traceback" not in blocked.stderr
    assert "credentials" in blocked.stderr, (
        f"the missing credentials are not named: {blocked.stderr!r}"
    )


def test_waf_block_with_aws_unreachable_says_so_not_that_the_allowlist_is_broken(
    aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same with the endpoint unreachable (the local stack stopped, a network outage):
    `waf block` says "cannot reach AWS at ...", as `waf list` does."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS_PARAMETER", names.ADMIN_ALLOWLIST_PARAMETER)
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", names.NEVER_BLOCK_PARAMETER)
    clear_caches()
    assert main(["waf", "list"]) == 1
    assert "cannot reach AWS" in capsys.readouterr().err

    code = main(["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "oncall"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach AWS" in err, f"the unreachable endpoint is not named: {err!r}"


# --- a denied permission, a throttled call: what it means and what to do next ---------


def _said(err: str) -> str:
    """What on-call reads on stderr: not the JSON log lines meant for CloudWatch."""
    return "".join(line for line in err.splitlines(True) if not line.startswith("{"))


@pytest.mark.parametrize(
    ("code", "meaning", "next_step"),
    [
        ("AccessDeniedException", "lacks a permission", "docs/RUNBOOK.md"),
        ("ProvisionedThroughputExceededException", "throttled", "wait a minute"),
    ],
    ids=["denied", "throttled"],
)
def test_waf_list_denied_or_throttled_says_which_and_what_to_do_next(
    waf: WafResources,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
    meaning: str,
    next_step: str,
) -> None:
    """A role without dynamodb:Scan on the registry (a permission the RUNBOOK lists) and
    a throttled Scan are different problems: each is named, with its `next:` line, not
    one "AWS refused the request" that sends on-call to the permissions either way."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with faulty_aws_endpoint(monkeypatch) as faults:
        clear_caches()
        faults.rule = lambda target, body: refuse(code) if target.endswith(".Scan") else PASS
        result = main(["waf", "list"])
    err = _said(capsys.readouterr().err)
    assert result == 1
    assert code in err
    assert meaning in err, err
    assert "next:" in err, err
    assert next_step in err, err


@pytest.mark.parametrize(
    ("code", "meaning"),
    [("AccessDeniedException", "lacks a permission"), ("ThrottlingException", "throttled")],
    ids=["denied", "throttled"],
)
def test_waf_block_with_the_never_block_list_unreadable_names_why(
    waf: WafResources,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
    meaning: str,
) -> None:
    """`waf block` needs ssm:GetParameter on /babyshield/* (RUNBOOK). Denied or
    throttled, it says why the never-block list could not be read and what to do, so
    a missing permission does not look like a broken list or an outage."""
    boto3.client("ssm").put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER, Value=",", Type="String", Overwrite=True
    )
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", names.NEVER_BLOCK_PARAMETER)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with faulty_aws_endpoint(monkeypatch) as faults:
        clear_caches()
        faults.rule = lambda target, body: (
            refuse(code) if target.endswith("AmazonSSM.GetParameter") else PASS
        )
        result = main(["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "alice"])
        ip_set_after = ip_set_addresses(waf, 4)
    err = _said(capsys.readouterr().err)
    assert result == 1
    assert "nothing is blocked" in err
    assert code in err, err
    assert meaning in err, err
    assert "next:" in err, err
    assert ip_set_after == []


# --- webhook send: a mistyped --url, an API that does not answer -----------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/webhooks/recalls",  # unclosed IPv6 bracket
        "http://127.0.0.1:80a/webhooks/recalls",  # a typo in the port
        "http:///webhooks/recalls",  # no host
    ],
)
def test_webhook_send_refuses_a_malformed_url_before_reading_the_secret(
    url: str, tmp_path: Path
) -> None:
    """A typo in `--url` is a usage error (exit 2) naming --url, before the webhook
    secret is read: in AWS a read from a shell pages the unexpected-secret-read alert."""
    result = run_cli("webhook", "send", "--url", url, cwd=tmp_path)
    assert "cannot read the webhook secret" not in result.stderr, (
        f"the secret was read before the URL was checked: {result.stderr!r}"
    )
    assert result.returncode == 2, result.stderr
    assert "--url" in result.stderr


def test_webhook_send_with_a_malformed_url_and_a_secret_says_what_is_wrong(
    tmp_path: Path,
) -> None:
    """With --secret given, the same typo is a usage error too, not an "unexpected
    failure" to report."""
    result = run_cli(
        "webhook",
        "send",
        "--url",
        "http://[::1/webhooks/recalls",
        "--secret",
        FEED_SIGNING_VALUE,
        cwd=tmp_path,
    )
    assert "unexpected failure" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr


# --- rotate: --wait out of range ---------------------------------------------------------


def test_rotate_refuses_a_wait_that_is_not_a_number(tmp_path: Path) -> None:
    """The RUNBOOK: "2 when it refused its arguments and tried nothing (... `--wait -5`
    ...)". `--wait nan` is refused too: against AWS its deadline would never pass, and
    the command would poll forever after a rotation that failed."""
    result = run_cli("rotate", "db-app", "--wait", "nan", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--wait" in result.stderr


@pytest.mark.parametrize("message_id", ["msg 1", "msg\x071", ""])
def test_webhook_send_refuses_a_message_id_no_header_can_carry(
    message_id: str, tmp_path: Path
) -> None:
    result = run_cli(
        "webhook", "send", "--message-id", message_id, "--secret", FEED_SIGNING_VALUE, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "--message-id" in result.stderr
    assert "Traceback" not in result.stderr


@contextmanager
def api_that(behaviour: str) -> Iterator[str]:
    """A TCP server on loopback that accepts a connection, reads the request, then
    closes without answering ("hangs-up") or never answers ("stalls")."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(5)
            with suppress(OSError):
                conn.recv(65536)
            if behaviour == "hangs-up":
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/webhooks/recalls"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("behaviour", ["hangs-up", "stalls"])
def test_webhook_send_to_an_api_that_does_not_answer_says_so_and_how_to_retry(
    behaviour: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An API that takes the connection and then drops it (a crashed server, a proxy)
    or says nothing for the command's 10 s is an endpoint that did not answer, not an
    "unexpected failure" to report as a bug. The delivery may have been applied, so
    the line says so and names the retry that cannot apply it twice: the same
    webhook-id again, with the same event (kept in a file)."""
    import tempfile

    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    # The command keeps the event for the resend in the temporary folder: this test's.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with api_that(behaviour) as url:
        code = main(["webhook", "send", "--url", url, "--secret", FEED_SIGNING_VALUE])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "unexpected failure" not in err, err
    assert f"no answer from {url}" in err, err
    assert "may or may not have been applied" in err
    assert "--message-id msg_" in err
    assert f"--file {tmp_path}/babyshield-webhook-" in err


@pytest.mark.parametrize("prefix", ["Bad Prefix", "", "x" * 60])
def test_db_migrate_refuses_a_malformed_role_prefix_before_connecting(
    prefix: str, tmp_path: Path
) -> None:
    """A prefix no role name can take is refused with exit 2 ("refused its arguments
    and tried nothing", RUNBOOK), before any connection, like a malformed URL."""
    result = run_cli(
        "db",
        "migrate",
        "--role-prefix",
        prefix,
        "--database-url",
        "postgresql://nobody@127.0.0.1:9/nothing",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "--role-prefix" in result.stderr
    assert "lower-case identifier" in result.stderr
    assert "cannot connect" not in result.stderr


# --- Ctrl-C halfway ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "oncall"],
        ["waf", "unblock", "203.0.113.7", "--by", "oncall"],
    ],
    ids=["block", "unblock"],
)
def test_waf_change_interrupted_after_its_registry_write_says_how_to_see_and_finish_it(
    waf: WafResources,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Ctrl-C after the registry took the change and before the IP sets did: exit 130
    as always, but not in silence. On-call reads that the change may have been made
    in part, where to see what the registry holds, and that repeating the command is
    safe (the sync runs again)."""
    from functions.shared import blocks

    if command[1] == "unblock":
        assert main(["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "oncall"]) == 0
        capsys.readouterr()

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(blocks, "_sync_after_change", interrupted)
    assert main(command) == 130
    said = _said(capsys.readouterr().err)
    assert "interrupted" in said
    assert "may have" in said
    assert "babyshield waf list --all" in said
    assert "repeat" in said
