"""`babyshield waf list|block|unblock` against the moto server: what on-call sees and does."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Iterator

import pytest

from functions.shared import names
from functions.waf_responder.events import alarm_state_change_event
from ops.apigw import LocalLambdaContext
from ops.cli import main
from tests.support.waf import (
    WafResources,
    clear_caches,
    create_resources,
    ip_set_addresses,
    ip_set_updates_always_conflict,
    put_waf_records,
    registry_ips,
)


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "5")
    yield create_resources(monkeypatch)
    clear_caches()


def test_block_list_unblock_round_trip(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the manual path: a hand block reaches the IP set at once, shows in the
    list with its reason and expiry, and unblock removes it at once."""
    assert (
        main(
            [
                "waf",
                "block",
                "203.0.113.7",
                "2001:db8::7",
                "--reason",
                "credential stuffing",
                "--for",
                "2h",
                "--by",
                "alice",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "blocked 203.0.113.7 until" in out
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert ip_set_addresses(waf, 6) == ["2001:db8::7/128"]

    assert main(["waf", "list"]) == 0
    table = capsys.readouterr().out
    assert "ADDRESS" in table
    assert "EXPIRES (UTC)" in table
    assert "203.0.113.7" in table
    assert "credential stuffing" in table
    assert "1h59m" in table

    assert main(["waf", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {b["ip"] for b in listed} == {"203.0.113.7/32", "2001:db8::7/128"}
    assert all(b["actor"] == "alice" and b["source"] == "manual" for b in listed)

    assert main(["waf", "unblock", "203.0.113.7", "--by", "bob"]) == 0
    assert "unblocked 203.0.113.7" in capsys.readouterr().out
    assert ip_set_addresses(waf, 4) == []
    assert ip_set_addresses(waf, 6) == ["2001:db8::7/128"]
    # The unblocked row stays as a release marker (offences reset), no longer a block
    assert main(["waf", "list", "--json"]) == 0
    assert [b["ip"] for b in json.loads(capsys.readouterr().out)] == ["2001:db8::7/128"]
    assert main(["waf", "list", "--all", "--json"]) == 0
    released = {b["ip"]: b for b in json.loads(capsys.readouterr().out)}["203.0.113.7/32"]
    assert (released["released_by"], released["offences"]) == ("bob", 0)


def test_unblock_by_event_undoes_everything_one_alarm_did(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the undo command printed in the on-call message for large events."""
    from functions.waf_responder.handler import lambda_handler

    put_waf_records({"203.0.113.1": 9, "203.0.113.2": 9})
    assert main(["waf", "block", "198.51.100.5", "--reason", "by hand"]) == 0
    result = lambda_handler(alarm_state_change_event(names.ALARM_WAF_BLOCKED), LocalLambdaContext())
    assert len(ip_set_addresses(waf, 4)) == 3
    capsys.readouterr()

    assert main(["waf", "unblock", "--event", result["event_id"]]) == 0

    assert ip_set_addresses(waf, 4) == ["198.51.100.5/32"]
    out = capsys.readouterr().out
    assert "unblocked 203.0.113.1" in out
    assert "unblocked 203.0.113.2" in out


def test_blocking_an_allowlisted_address_is_refused(
    waf: WafResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects admins from a hand block as much as from an automatic one."""
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "203.0.113.0/28")
    code = main(["waf", "block", "203.0.113.5", "--reason", "oops"])
    err = capsys.readouterr().err
    assert code == 1
    assert "203.0.113.5 is on the admin allowlist" in err
    assert registry_ips() == []


def test_unblocking_an_address_that_is_not_blocked_says_so(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["waf", "unblock", "203.0.113.99"])
    captured = capsys.readouterr()
    assert code == 1
    assert "not blocked: 203.0.113.99\n" in captured.out
    assert "nothing was unblocked" in captured.err


def test_missing_registry_table_is_a_clear_error(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the first run against an undeployed stack: name the missing table."""
    code = main(["waf", "list"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"the block registry table {names.BLOCK_REGISTRY_TABLE} does not exist" in err
    assert "Traceback" not in err


def test_json_output_stays_parseable_and_the_audit_trail_goes_to_stderr(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects scripts that pipe --json into jq, and the audit line saying who did what."""
    assert (
        main(["waf", "block", "203.0.113.8", "--reason", "scraping", "--by", "alice", "--json"])
        == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["blocked"][0]["ip"] == "203.0.113.8/32"

    assert main(["waf", "unblock", "203.0.113.8", "--by", "bob", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unblocked"][0]["ip"] == "203.0.113.8/32"
    audit = [json.loads(line)["audit"] for line in captured.err.splitlines() if '"audit"' in line]
    assert audit == [
        {
            "action": "unblock",
            "by": "bob",
            "ip": "203.0.113.8/32",
            "block": audit[0]["block"],
        }
    ]
    assert audit[0]["block"]["actor"] == "alice"


def test_unblock_json_prints_each_block_as_released_as_the_registry_holds_it(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects scripts reading `unblock --json`: each block as the release left it
    (offences reset, released at and by), as `list --all --json` shows it afterwards,
    not as it was before (released_at null, offences 1)."""
    # Given a hand block
    assert main(["waf", "block", "203.0.113.8", "--reason", "scraping", "--by", "alice"]) == 0
    capsys.readouterr()

    # When bob unblocks it, asking for JSON
    before = time.time()
    assert main(["waf", "unblock", "203.0.113.8", "--by", "bob", "--json"]) == 0
    (unblocked,) = json.loads(capsys.readouterr().out)["unblocked"]

    # Then the row says released, by bob, now, its offences reset
    assert (unblocked["released_by"], unblocked["offences"]) == ("bob", 0)
    assert int(before) <= unblocked["released_at"] <= time.time()
    # And it is the row the registry holds
    assert main(["waf", "list", "--all", "--json"]) == 0
    (held,) = json.loads(capsys.readouterr().out)
    assert {k: held[k] for k in unblocked} == unblocked


def test_local_alarm_blocks_seeded_offenders_and_list_shows_them_with_expiry(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the local demo (`make run`, then an alarm): the responder runs in-process
    against the local resources, returns the on-call message, and `waf list` shows the
    block with its expiry. Running the resource setup again changes nothing."""
    from ops.waf import ensure_local_resources, trigger_alarm

    assert ensure_local_resources()["AUTO_BLOCK_IPSET_V4_ID"] == waf.ipset_ids[4]
    put_waf_records({"203.0.113.44": 12})

    result = trigger_alarm("waf-blocked-requests")

    assert "babyshield waf unblock 203.0.113.44" in result["message"]
    assert main(["waf", "list"]) == 0
    table = capsys.readouterr().out
    assert "203.0.113.44" in table
    assert "3h59m" in table


def test_unblocking_an_address_inside_a_blocked_network_names_the_network(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects on-call from a false "not blocked": the address is still refused at the
    WAF because a wider block covers it, and only unblocking that network helps."""
    # Given a blocked /24
    assert main(["waf", "block", "198.51.100.0/24", "--reason", "scanner farm"]) == 0
    capsys.readouterr()

    # When on-call unblocks one address in it
    code = main(["waf", "unblock", "198.51.100.5"])

    # Then the answer names the covering network and the command that lifts it
    captured = capsys.readouterr()
    assert code == 1
    assert "198.51.100.5 is inside the blocked 198.51.100.0/24" in captured.out
    assert "nothing was unblocked" in captured.err
    assert "next: babyshield waf unblock 198.51.100.0/24" in captured.err
    assert ip_set_addresses(waf, 4) == ["198.51.100.0/24"]

    # And --json says the same for scripts
    assert main(["waf", "unblock", "198.51.100.5", "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["covered_by"] == {"198.51.100.5/32": ["198.51.100.0/24"]}

    # And a network unblocked in the same call covers nothing any more
    assert main(["waf", "unblock", "198.51.100.5", "198.51.100.0/24"]) == 0
    out = capsys.readouterr().out
    assert "unblocked 198.51.100.0/24" in out
    assert "not blocked: 198.51.100.5\n" in out
    assert "inside" not in out
    assert ip_set_addresses(waf, 4) == []


def test_list_never_prints_control_characters_from_the_registry(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the on-call terminal: a reason stored before the reason rule (or by a
    hand edit) with escape sequences and newlines is shown escaped, on one row."""
    from functions.shared import blocks

    # Given registry entries written past the rule
    now = int(time.time())
    hostile = "pwn\x1b]0;owned\x07\x1b[2J\nADDRESS fake row\u202e" + "x" * 100_000
    blocks.registry().put_many(
        [
            blocks.Block(
                network=ipaddress.ip_network("203.0.113.66/32"),
                reason=hostile,
                alarm="manual\x1b[31m",
                source="manual",
                first_seen=now,
                last_seen=now,
                blocked_until=now + 3600,
            )
        ],
        memory_seconds=60,
    )

    # When on-call lists the blocks, then unblocks the entry
    assert main(["waf", "list"]) == 0
    table = capsys.readouterr().out
    assert main(["waf", "unblock", "203.0.113.66"]) == 0
    unblocked = capsys.readouterr().out

    # Then no control character reached the terminal, and the row stays one line
    for out in (table, unblocked):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out)
        assert "\u202e" not in out
        assert "\\x1b]0;owned\\x07" in out
    # Header, rule, the row; then (the row was never synced) the note on what the WAF
    # does not hold.
    rows = table.split("\n\n", 1)[0].splitlines()
    assert len(rows) == 3
    assert len(rows[2]) < 1000


def test_against_aws_a_block_is_checked_against_the_deployed_protected_lists(
    waf: WafResources,
    aws: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An on-call shell names no *_PARAMETER variable; the stack keeps both lists in
    SSM. Blocking the admin allowlist would shut on-call out of the API itself."""
    import boto3

    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=names.ADMIN_ALLOWLIST_PARAMETER, Value="192.0.2.0/24", Type="String")
    ssm.put_parameter(Name=names.NEVER_BLOCK_PARAMETER, Value="198.51.100.0/24", Type="String")
    for variable in (
        "ADMIN_ALLOWED_CIDRS",
        "ADMIN_ALLOWED_CIDRS_PARAMETER",
        "NEVER_BLOCK_CIDRS",
        "NEVER_BLOCK_CIDRS_PARAMETER",
        "BABYSHIELD_ENV",
    ):
        # Set, then removed: monkeypatch then also takes back what the CLI sets.
        monkeypatch.setenv(variable, "-")
        monkeypatch.delenv(variable)
    # "AWS": no AWS_ENDPOINT_URL for the settings to see; botocore's per-service
    # endpoint variables still lead each client to the moto server.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    for service in ("SSM", "DYNAMODB", "WAFV2"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", aws)
    clear_caches()

    for target in ("192.0.2.10", "198.51.100.7"):
        code = main(["waf", "block", target, "--reason", "typo", "--by", "bob"])
        assert code == 1
        assert "it is never blocked" in capsys.readouterr().err
    assert ip_set_addresses(waf, 4) == []
    # An address on neither list is blocked as before
    assert main(["waf", "block", "203.0.113.7", "--reason", "scan", "--by", "bob"]) == 0
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    # And the parameter names were the command's alone: the process's settings (the
    # responder's, in the tests that follow) do not read them afterwards
    assert not {"ADMIN_ALLOWED_CIDRS_PARAMETER", "NEVER_BLOCK_CIDRS_PARAMETER"} & set(os.environ)

    # A block whose address joined the never-block list afterwards stays out of the IP
    # sets when an unblock of another address syncs them
    assert main(["waf", "block", "203.0.113.8", "--reason", "scan", "--by", "bob"]) == 0
    ssm.put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER, Value="203.0.113.8/32", Type="String", Overwrite=True
    )
    clear_caches()
    assert main(["waf", "unblock", "203.0.113.7", "--by", "bob"]) == 0
    assert ip_set_addresses(waf, 4) == []


def test_unblocking_an_address_a_wider_block_still_covers_warns_and_fails(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects on-call from a false "unblocked": the address had a block of its own,
    but a wider block still makes the WAF refuse it."""
    # Given an address blocked by itself, then its /24 as well
    assert main(["waf", "block", "198.51.100.5", "--reason", "brute force"]) == 0
    assert main(["waf", "block", "198.51.100.0/24", "--reason", "scanner farm"]) == 0
    capsys.readouterr()

    # When on-call unblocks the address
    code = main(["waf", "unblock", "198.51.100.5"])

    # Then its own block is lifted, but the answer says the /24 still refuses it
    captured = capsys.readouterr()
    assert code == 1
    assert "unblocked 198.51.100.5" in captured.out
    assert (
        "warning: 198.51.100.5 is still refused at the WAF: it is inside the blocked "
        "198.51.100.0/24" in captured.out
    )
    assert "still refused at the WAF by a wider block" in captured.err
    assert "next: babyshield waf unblock 198.51.100.0/24" in captured.err
    assert ip_set_addresses(waf, 4) == ["198.51.100.0/24"]


def _audit_lines(stderr: str) -> list[dict[str, str]]:
    return [json.loads(line)["audit"] for line in stderr.splitlines() if '"audit"' in line]


def test_a_change_the_ip_sets_cannot_take_now_is_made_audited_and_reported_pending(
    waf: WafResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects the audit trail and on-call's picture: the registry holds the change,
    so the sweep applies it; the command says so instead of failing, and audits it."""
    from functions.waf_responder.sweep import sweep

    # Given the IP sets refuse every update (another writer always got there first)
    with monkeypatch.context() as conflicts:
        ip_set_updates_always_conflict(conflicts)
        # When on-call blocks an address
        assert main(["waf", "block", "203.0.113.9", "--reason", "scan", "--by", "alice"]) == 0
    blocked = capsys.readouterr()
    # Then the block is made and audited, and the command says it is pending
    assert "blocked 203.0.113.9 until" in blocked.out
    assert "warning: the WAF IP sets were not updated" in blocked.out
    assert "the sweep applies it within 5 minutes" in blocked.out
    assert [a["action"] for a in _audit_lines(blocked.err)] == ["block"]
    assert ip_set_addresses(waf, 4) == []
    # And the sweep, once WAF takes updates, applies it
    assert sweep()["restored"] == ["203.0.113.9/32"]

    # When on-call unblocks it while the IP sets refuse updates again (as JSON)
    with monkeypatch.context() as conflicts:
        ip_set_updates_always_conflict(conflicts)
        assert main(["waf", "unblock", "203.0.113.9", "--by", "bob", "--json"]) == 0
    unblocked = capsys.readouterr()
    # Then the same: made, audited, pending, applied by the sweep
    answer = json.loads(unblocked.out)
    assert (answer["pending"], answer["sync_error"]) == (
        True,
        "could not update the auto-block IP sets after 8 attempts; "
        "the registry holds the blocks and the next sync will apply them",
    )
    assert [b["ip"] for b in answer["unblocked"]] == ["203.0.113.9/32"]
    assert [(a["action"], a["by"]) for a in _audit_lines(unblocked.err)] == [("unblock", "bob")]
    assert ip_set_addresses(waf, 4) == ["203.0.113.9/32"]
    assert sweep()["removed"] == ["203.0.113.9/32"]


def test_list_all_shows_an_unblocked_address_as_released(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["waf", "block", "203.0.113.9", "--reason", "scan"]) == 0
    assert main(["waf", "unblock", "203.0.113.9"]) == 0
    capsys.readouterr()

    assert main(["waf", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no live blocks"
    assert main(["waf", "list", "--all"]) == 0
    (row,) = capsys.readouterr().out.splitlines()[2:]
    assert row.split()[0] == "203.0.113.9"
    assert "released" in row


def test_blocking_a_blocked_address_says_what_it_replaced_and_when_it_shortens_it(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """A block replaces a live one's reason and expiry: on-call must see the block it
    replaced, and be told when the new expiry is earlier than the old one."""
    first = ["waf", "block", "203.0.113.7", "--reason", "scanner", "--for", "2d", "--by", "alice"]
    assert main(first) == 0
    assert "replaces" not in capsys.readouterr().out

    again = ["waf", "block", "203.0.113.7", "--reason", "retry", "--for", "1h", "--by", "bob"]
    assert main(again) == 0
    out = capsys.readouterr().out
    assert "blocked 203.0.113.7 until" in out
    assert "replaces the block until" in out
    assert "(shortened) by alice: scanner" in out

    longer = ["waf", "block", "203.0.113.7", "--reason", "worse", "--for", "3d", "--json"]
    assert main(longer) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(b["ip"], b["reason"], b["actor"]) for b in shown["replaced"]] == [
        ("203.0.113.7/32", "retry", "bob")
    ]
    assert shown["replaced"][0]["blocked_until"] < shown["blocked"][0]["blocked_until"]
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]


def test_blocking_an_unblocked_address_replaces_nothing(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """A release marker is no live block: blocking that address again replaces nothing."""
    assert main(["waf", "block", "203.0.113.8", "--reason", "scan", "--by", "alice"]) == 0
    assert main(["waf", "unblock", "203.0.113.8", "--by", "alice"]) == 0
    capsys.readouterr()
    assert main(["waf", "block", "203.0.113.8", "--reason", "scan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["replaced"] == []


def test_unblocking_an_expired_block_says_it_was_not_blocked_and_what_the_release_did(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired block is offence memory, not a block: the command reported and audited
    'unblocked' for it. It now says the address was not blocked. The release is still
    made: a legitimate customer's history is cleared, and the evidence that blocked it
    cannot block it again while the alarm stays in ALARM."""
    from functions.shared import blocks

    past = time.time() - 3 * 3600
    blocks.block(["203.0.113.7"], reason="scan", duration_seconds=3600, actor="alice", now=past)
    capsys.readouterr()

    assert main(["waf", "unblock", "203.0.113.7", "--by", "bob"]) == 0
    out = capsys.readouterr().out
    assert "unblocked 203.0.113.7" not in out
    assert "not blocked: 203.0.113.7 (its block expired" in out
    assert main(["waf", "list", "--all", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["released_by"], row["offences"]) == ("bob", 0)

    assert main(["waf", "unblock", "203.0.113.7", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["not_blocked"] == ["203.0.113.7/32"]
