"""What must hold when things go wrong: races, crashes midway, the size limit, expiry."""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.shared import blocks, names
from functions.shared.aws_clients import Timeouts
from functions.waf_responder import offenders
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from tests.support.aws import REGION
from tests.support.waf import (
    WafResources,
    create_web_acl,
    ip_set_addresses,
    oncall_messages,
    put_failed_sign_ins,
    put_row_under_another_spelling,
    put_waf_records,
    registry_ips,
    set_ip_set,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def test_two_responders_on_different_alarms_end_with_the_union_of_their_blocks(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects against a lost update: both responders read the same LockToken before
    either writes, so one really gets WAFOptimisticLockException from the server; it
    must re-read and end with both responders' blocks in the set."""
    # Given offenders for two different alarms
    put_waf_records({"203.0.113.1": 10, "203.0.113.2": 10})
    put_failed_sign_ins({"198.51.100.1": 5, "198.51.100.2": 5})
    # And both responders held at the moment before their first UpdateIPSet, until both arrive
    arrived = threading.Barrier(2, timeout=30)
    held = threading.local()
    real_put = blocks._put_ip_set

    def put_after_both_planned(*args: Any, **kwargs: Any) -> None:
        if not getattr(held, "done", False):
            held.done = True
            arrived.wait()
        real_put(*args, **kwargs)

    monkeypatch.setattr(blocks, "_put_ip_set", put_after_both_planned)
    results: dict[str, dict[str, Any]] = {}
    errors: list[Exception] = []

    def respond(alarm: str) -> None:
        try:
            results[alarm] = invoke(alarm_state_change_event(alarm))
        except Exception as exc:  # noqa: BLE001 - reported below; a thread cannot fail the test
            errors.append(exc)

    # When both are started together
    threads = [
        threading.Thread(target=respond, args=(alarm,))
        for alarm in (names.ALARM_WAF_BLOCKED, names.ALARM_FAILED_SIGNINS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then the IP set holds the union, and the conflict really happened and was retried
    assert errors == []
    assert ip_set_addresses(waf, 4) == [
        "198.51.100.1/32",
        "198.51.100.2/32",
        "203.0.113.1/32",
        "203.0.113.2/32",
    ]
    assert sum(r["lock_retries"] for r in results.values()) >= 1
    assert len(oncall_messages(waf)) == 2


def test_failure_between_registry_write_and_ip_set_update_is_repaired_by_the_retry(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects against a half-done block: the registry write happened, the IP set
    update did not; the redelivered event finishes the job and sends one message."""
    put_waf_records({"203.0.113.7": 9})
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    real_put = blocks._put_ip_set

    def crash(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the Lambda died here")

    monkeypatch.setattr(blocks, "_put_ip_set", crash)
    with pytest.raises(ConnectionError):
        invoke(event)
    assert registry_ips() == ["203.0.113.7/32"]
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []

    monkeypatch.setattr(blocks, "_put_ip_set", real_put)
    result = invoke(event)

    assert result["blocked"] == ["203.0.113.7/32"]
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert len(oncall_messages(waf)) == 1


def test_failure_between_registry_write_and_ip_set_update_is_repaired_by_the_sweep(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects against a retry that never comes: the scheduled sweep applies what the
    registry holds, and removes what it does not (a stray entry)."""
    put_waf_records({"203.0.113.7": 9})
    real_put = blocks._put_ip_set

    def crash(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the Lambda died here")

    monkeypatch.setattr(blocks, "_put_ip_set", crash)
    with pytest.raises(ConnectionError):
        invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    monkeypatch.setattr(blocks, "_put_ip_set", real_put)
    set_ip_set(waf, 4, ["192.0.2.99/32"])

    result = invoke(scheduled_sweep_event())

    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert result["restored"] == ["203.0.113.7/32"]
    assert result["removed"] == ["192.0.2.99/32"]


def test_a_registry_batch_naming_one_address_twice_writes_it_once(waf: WafResources) -> None:
    """Protects every writer of the registry: BatchWriteItem refuses a whole batch that
    names a key twice, so a repeated address must become one write. (DynamoDB refuses
    a repeated key whatever the other attributes; moto only a repeated identical item,
    which is what an address named twice in one request produced.)"""
    # Given the same entry twice in one batch
    now = int(time.time())
    entry = blocks.Block(
        ipaddress.ip_network("203.0.113.50/32"), "dup", "manual", "manual", now, now, now + 3600
    )

    # When it is written
    blocks.registry().put_many([entry, entry], memory_seconds=86400)

    # Then the registry holds the address once
    assert registry_ips() == ["203.0.113.50/32"]


def test_sweep_removes_expired_blocks_and_keeps_live_ones(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects expiry: after its time an address leaves the IP set; live ones stay."""
    monkeypatch.setenv("BLOCK_EXPIRY_BY_ALARM", f"{names.ALARM_FAILED_SIGNINS}=60")
    put_waf_records({"203.0.113.7": 9})
    put_failed_sign_ins({"198.51.100.9": 5})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))
    assert ip_set_addresses(waf, 4) == ["198.51.100.9/32", "203.0.113.7/32"]

    # When the sweep runs two minutes later (the sign-in block lasted one)
    from functions.waf_responder.sweep import sweep

    result = sweep(now=time.time() + 120)

    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert result["removed"] == ["198.51.100.9/32"]


def test_a_sweep_that_expires_one_of_two_merged_blocks_restores_nothing(
    waf: WafResources,
) -> None:
    """Adjacent blocks share one aggregated entry (a /31). When one expires the entry
    becomes a /32; compared as strings that read as the /31 removed and the /32
    "restored", the sign (and warning) of a crashed writer or a hand edit. Compared
    as address space, one address left and nothing came back."""
    from functions.waf_responder.sweep import sweep

    blocks.block(["203.0.113.0"], reason="scan", duration_seconds=4 * 3600, actor="alice")
    blocks.block(["203.0.113.1"], reason="scan", duration_seconds=3600, actor="alice")
    assert ip_set_addresses(waf, 4) == ["203.0.113.0/31"]

    report = sweep(now=time.time() + 2 * 3600)

    assert ip_set_addresses(waf, 4) == ["203.0.113.0/32"]
    assert (report["removed"], report["restored"]) == (["203.0.113.1/32"], [])


def test_rate_alarm_blocks_managed_keys_with_stubbed_GetRateBasedStatementManagedKeys(  # noqa: N802
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects the rate alarm path. moto lacks GetRateBasedStatementManagedKeys, so a
    botocore Stubber answers that one call on its own client; everything else (web ACL
    lookup, registry, IP sets, SNS) is the moto server."""
    acl_id = create_web_acl()
    client = boto3.client("wafv2", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "get_rate_based_statement_managed_keys",
        {
            "ManagedKeysIPV4": {"IPAddressVersion": "IPV4", "Addresses": ["203.0.113.60/32"]},
            # Two limited addresses of one IPv6 client's /64: one block of that /64
            "ManagedKeysIPV6": {
                "IPAddressVersion": "IPV6",
                "Addresses": ["2001:db8::60/128", "2001:db8::61/128"],
            },
        },
        {
            "Scope": "REGIONAL",
            "WebACLName": names.WEB_ACL,
            "WebACLId": acl_id,
            "RuleName": names.RATE_RULE,
        },
    )
    monkeypatch.setattr(offenders, "rate_keys_client", lambda: client)

    with stubber:
        result = invoke(alarm_state_change_event(names.ALARM_WAF_RATE))

    stubber.assert_no_pending_responses()
    assert sorted(result["blocked"]) == ["2001:db8::/64", "203.0.113.60/32"]
    assert ip_set_addresses(waf, 4) == ["203.0.113.60/32"]
    assert ip_set_addresses(waf, 6) == ["2001:db8::/64"]


@pytest.mark.slow
def test_twelve_thousand_offenders_stay_within_the_ip_set_limit_and_oncall_is_told(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects the 10,000-address WAF limit: 12,000 non-adjacent offenders (so none
    aggregate) leave the set at 10,000 entries, all 12,000 in the registry, and the
    message says 2,000 were left out. GetRateBasedStatementManagedKeys is stubbed (moto
    lacks it); the registry and IP set writes go to the moto server."""
    monkeypatch.setenv("MAX_NEW_BLOCKS_PER_EVENT", "20000")
    monkeypatch.setenv("WEB_ACL_ID", "acl-id")
    base = int(ipaddress.IPv4Address("11.0.0.0"))
    addresses = [f"{ipaddress.IPv4Address(base + 2 * i)}/32" for i in range(12_000)]
    client = boto3.client("wafv2", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "get_rate_based_statement_managed_keys",
        {"ManagedKeysIPV4": {"IPAddressVersion": "IPV4", "Addresses": addresses}},
    )
    monkeypatch.setattr(offenders, "rate_keys_client", lambda: client)
    # moto scans 12,000 registry rows, and writes a 10,000-address IP set, far more
    # slowly than AWS: past the responder's 10 s read timeout on a busy machine, the
    # retry then queues behind the call still running. The calls get room here; the
    # work and what it must leave are the same.
    slow_moto = Timeouts(connect_seconds=3, read_seconds=120, max_attempts=4)

    with stubber, blocks.request_budget(slow_moto):
        result = invoke(alarm_state_change_event(names.ALARM_WAF_RATE))

    assert len(ip_set_addresses(waf, 4)) == 10_000
    # (All 12,000 are registry entries; counted from the answer, as a scan on moto is slow.)
    assert result["blocked_count"] == 12_000
    assert result["left_out_count"] == 2_000
    message = oncall_messages(waf)[0]
    assert "Left out of the WAF IP sets (2000)" in message["Message"]
    assert "2000 over limit" in message["Subject"]


def test_throttled_ip_set_update_is_retried_with_backoff(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects against WAF throttling beyond botocore's own retries: the responder
    backs off, re-reads and writes the whole list once WAF accepts it."""
    from botocore.exceptions import ClientError

    put_waf_records({"203.0.113.7": 9})
    real_put = blocks._put_ip_set
    refusals = iter([True, True])

    def throttled_twice(*args: Any, **kwargs: Any) -> None:
        if next(refusals, False):
            raise ClientError(
                {"Error": {"Code": "WAFInternalErrorException", "Message": "try again"}},
                "UpdateIPSet",
            )
        real_put(*args, **kwargs)

    monkeypatch.setattr(blocks, "_put_ip_set", throttled_twice)

    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    assert result["lock_retries"] == 2
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]


def test_an_ipv4_mapped_target_is_its_ipv4_address_for_protection_and_prefix(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects the never-block list and the minimum prefix from a second spelling:
    ::ffff:203.0.113.7 is 203.0.113.7, and ::ffff:0.0.0.0/96 is all of IPv4."""
    from functions.shared.settings import get_settings

    monkeypatch.setenv("NEVER_BLOCK_CIDRS", "203.0.113.0/24")
    get_settings.cache_clear()

    with pytest.raises(
        blocks.ProtectedAddress, match=re.escape("203.0.113.7 is on the never-block")
    ):
        blocks.block(["::ffff:203.0.113.7"], reason="x", duration_seconds=3600, actor="t")
    with pytest.raises(blocks.InvalidTarget, match="wider than /16"):
        blocks.block(["::ffff:0.0.0.0/96"], reason="x", duration_seconds=3600, actor="t")
    # An address on no list is blocked under its IPv4 spelling, in the IPv4 set
    result = blocks.block(["::ffff:198.51.100.7"], reason="x", duration_seconds=3600, actor="t")
    assert [b.ip for b in result.changed] == ["198.51.100.7/32"]
    assert ip_set_addresses(waf, 4) == ["198.51.100.7/32"]
    assert ip_set_addresses(waf, 6) == []


def test_a_row_stored_under_another_pythons_spelling_is_unblocked_by_its_stored_key(
    waf: WafResources,
) -> None:
    """Python 3.13 (the Lambda runtime) spells an IPv4-mapped network
    '::ffff:203.0.113.7/128', 3.11 '::ffff:cb00:7107/128': a row written by one must be
    found and removed by the other, not re-spelled into a key that names nothing."""
    # Given a row as an earlier responder on 3.13 wrote it
    key = "::ffff:203.0.113.7/128"
    put_row_under_another_spelling(key)
    # Then it reads back, and is enforced, as the IPv4 address it names
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert [b.ip for b in blocks.list_blocks()] == ["203.0.113.7/32"]

    # When on-call unblocks it, in either spelling
    result = blocks.unblock(["::ffff:203.0.113.7"], actor="oncall")

    # Then the stored row is gone (kept only as a release marker under the one key)
    assert [b.ip for b in result.changed] == ["203.0.113.7/32"]
    assert registry_ips() == ["203.0.113.7/32"]
    assert blocks.list_blocks() == []
    assert ip_set_addresses(waf, 4) == []
    assert ip_set_addresses(waf, 6) == []


def test_a_sweeps_look_again_that_could_not_tell_oncall_fails_and_its_retry_tells(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recheck that blocked an address and then could not publish was swallowed by the
    sweep: the invocation succeeded, nothing retried it, and the next look saw the
    block as 'already blocked'. The address stayed blocked and on-call never got its
    undo command. The invocation now fails after the sweep, and its retry (the same
    event) announces the block."""
    from functions.shared.settings import get_settings
    from functions.waf_responder.respond import RecheckFailed
    from tests.support.waf import alarm_in_state

    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    put_waf_records({"198.51.100.44": 9})
    sweep_event = scheduled_sweep_event()
    monkeypatch.setenv("ONCALL_TOPIC_ARN", waf.topic_arn + "-gone")
    get_settings.cache_clear()
    with pytest.raises(RecheckFailed, match=names.ALARM_WAF_BLOCKED):
        invoke(sweep_event)
    assert ip_set_addresses(waf, 4) == ["198.51.100.44/32"]

    monkeypatch.setenv("ONCALL_TOPIC_ARN", waf.topic_arn)
    get_settings.cache_clear()
    retried = invoke(sweep_event)

    assert retried["rechecked"][0]["blocked"] == ["198.51.100.44/32"]
    (message,) = oncall_messages(waf)
    assert "babyshield waf unblock 198.51.100.44" in message["Message"]
