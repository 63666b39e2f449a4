"""The responder end to end on the moto server: alarm in, blocks and one on-call message out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from functions.shared import names
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from tests.support.aws import REGION
from tests.support.logs import emf_metrics, raw_log_text
from tests.support.waf import (
    WafResources,
    alarm_in_state,
    idempotency_records,
    ip_set_addresses,
    oncall_messages,
    put_failed_sign_ins,
    put_waf_records,
    registry_ips,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def test_blocked_requests_alarm_blocks_offenders_over_threshold_and_tells_oncall(
    waf: WafResources, invoke: Invoke
) -> None:
    """Protects the main flow: offenders from the WAF log land in the registry and the IP
    sets (v4 as /32, v6 as its /64), light traffic is left alone, and on-call gets one
    message with the exact undo command."""
    # Given two heavy offenders (one v6) and one address under the threshold of 5
    put_waf_records({"203.0.113.7": 12, "2001:db8::9": 7, "198.51.100.20": 2})

    # When the blocked-requests alarm fires
    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    # Then both offenders are blocked, in the right IP set, and nothing else
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert ip_set_addresses(waf, 6) == ["2001:db8::/64"]
    assert registry_ips() == ["2001:db8::/64", "203.0.113.7/32"]
    assert sorted(result["blocked"]) == ["2001:db8::/64", "203.0.113.7/32"]
    # And on-call got exactly one message naming them, with the undo command
    messages = oncall_messages(waf)
    assert len(messages) == 1
    text = messages[0]["Message"]
    assert "203.0.113.7  12 requests" in text
    assert "babyshield waf unblock 203.0.113.7 2001:db8::/64" in text
    assert f"babyshield waf unblock --event {result['event_id']}" in text
    assert "198.51.100.20" not in text


def test_block_expiry_is_four_hours_by_default_and_recorded_in_the_registry(
    waf: WafResources, invoke: Invoke
) -> None:
    """Protects the default expiry: a block ends 4 hours after it was made."""
    put_waf_records({"203.0.113.7": 6})
    before = int(time.time())

    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=names.BLOCK_REGISTRY_TABLE,
        Key={names.TABLE_PARTITION_KEY: {"S": "203.0.113.7/32"}},
    )["Item"]
    blocked_until = int(item["blocked_until"]["N"])
    assert before + 4 * 3600 <= blocked_until <= int(time.time()) + 4 * 3600
    assert item["alarm"]["S"] == names.ALARM_WAF_BLOCKED
    # The TTL outlives the block: the registry remembers the offence for escalation.
    assert int(item[names.TTL_ATTRIBUTE]["N"]) > blocked_until


def test_a_rate_limited_client_that_waits_its_retry_after_is_served_again(
    waf: WafResources, invoke: Invoke, rate_rule: Any
) -> None:
    """The rate rule answers 429 with `Retry-After: 300` and "Retry after 300 seconds";
    that refusal also fires the rate alarm, which starts the responder. The auto-block
    rules come before the rate rule: blocked for the default four hours, a client that
    waited as it was told met a 403 for hours. It is blocked for the rate window."""
    from cdk.waf import RATE_LIMIT_WINDOW_SECONDS, RATE_LIMITED_BODY
    from functions.shared import blocks
    from tests.integration.waf_responder.conftest import limited

    assert f"Retry after {RATE_LIMIT_WINDOW_SECONDS} seconds" in RATE_LIMITED_BODY
    limited(rate_rule, "203.0.113.7/32")
    told_to_retry_at = int(time.time()) + RATE_LIMIT_WINDOW_SECONDS

    invoke(alarm_state_change_event(names.ALARM_WAF_RATE))

    (block,) = blocks.list_blocks()
    assert block.blocked_until <= told_to_retry_at + 60


def test_requests_terminated_by_the_auto_block_rule_do_not_count(
    waf: WafResources, invoke: Invoke
) -> None:
    """Protects against blocks feeding on themselves: an address already stopped by
    the auto-block rule is not an offender because of those stopped requests."""
    put_waf_records({"203.0.113.50": 40}, rule=names.AUTO_BLOCK_RULE_V4)
    put_waf_records({"203.0.113.51": 40}, action="ALLOW")

    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    assert result["blocked"] == []
    assert ip_set_addresses(waf, 4) == []


def test_allowlisted_and_never_block_addresses_are_never_blocked(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects admins and our own infrastructure: whatever their counts, addresses on
    the admin allowlist (env) or the never-block list (SSM) are skipped, and on-call is
    told why."""
    # Given the admin allowlist and a never-block list held in SSM
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "192.0.2.0/28")
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER, Value="198.51.100.0/24,2001:db8:ffff::/48", Type="String"
    )
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", names.NEVER_BLOCK_PARAMETER)
    # And the heaviest "offenders" are exactly those addresses
    put_waf_records(
        {"192.0.2.5": 5000, "198.51.100.77": 3000, "2001:db8:ffff::1": 900, "203.0.113.9": 6}
    )

    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    # Then only the outsider is blocked
    assert ip_set_addresses(waf, 4) == ["203.0.113.9/32"]
    assert ip_set_addresses(waf, 6) == []
    assert registry_ips() == ["203.0.113.9/32"]
    why = {s["ip"]: s["why"] for s in result["skipped"]}
    assert why == {
        "192.0.2.5/32": "on the admin allowlist",
        "198.51.100.77/32": "on the never-block list",
        "2001:db8:ffff::/64": "on the never-block list",
    }
    assert (
        "  192.0.2.5  5000 requests  on the admin allowlist" in oncall_messages(waf)[0]["Message"]
    )


def test_unreadable_never_block_list_blocks_nothing(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects against a bad guess: if the never-block list cannot be read, the
    responder fails (to be retried) rather than block without it."""
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", "/babyshield/missing-parameter")
    put_waf_records({"203.0.113.9": 50})

    with pytest.raises(Exception, match="protected address list"):
        invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    assert registry_ips() == []
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []
    # The failed attempt leaves no idempotency record behind, so the retry runs in full.
    assert idempotency_records() == 0


def test_failed_sign_ins_alarm_blocks_callers_from_the_api_log(
    waf: WafResources, invoke: Invoke
) -> None:
    """Protects the sign-in path: the API's failed sign-in lines make offenders."""
    put_failed_sign_ins({"203.0.113.30": 4, "203.0.113.31": 1})

    result = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))

    assert result["blocked"] == ["203.0.113.30/32"]
    assert ip_set_addresses(waf, 4) == ["203.0.113.30/32"]


def test_same_event_delivered_twice_blocks_once_and_notifies_once(
    waf: WafResources, invoke: Invoke
) -> None:
    """Protects against EventBridge's at-least-once delivery: a redelivered event
    changes nothing and sends no second message, even if new offenders appeared."""
    put_waf_records({"203.0.113.7": 6})
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    first = invoke(event)
    put_waf_records({"203.0.113.8": 60})

    second = invoke(event)

    assert second == first
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    assert len(oncall_messages(waf)) == 1


@pytest.mark.parametrize("state", ["OK", "INSUFFICIENT_DATA"])
def test_transitions_other_than_alarm_are_ignored(
    waf: WafResources, invoke: Invoke, state: str
) -> None:
    """Protects against acting on recovery: only a transition into ALARM blocks."""
    put_waf_records({"203.0.113.7": 60})

    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED, state=state))

    assert result["status"] == "ignored"
    assert registry_ips() == []
    assert oncall_messages(waf) == []


def _foreign_and_malformed() -> list[tuple[str, Any]]:
    valid = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    no_state = json.loads(json.dumps(valid))
    del no_state["detail"]["state"]
    bad_time = json.loads(json.dumps(valid))
    bad_time["detail"]["state"]["timestamp"] = "yesterday"
    no_id = json.loads(json.dumps(valid))
    no_id["id"] = ""  # it keys the idempotency: once an IdempotencyKeyError, retried
    unknown_alarm = alarm_state_change_event("someone-elses-alarm")
    s3_event = {"source": "aws.s3", "detail-type": "Object Created", "detail": {}}
    return [
        ("alarm without state", no_state),
        ("alarm with unreadable time", bad_time),
        ("alarm without an id", no_id),
        ("alarm not configured", unknown_alarm),
        ("another service's event", s3_event),
        ("not an object", ["ALARM"]),
        ("empty", {}),
    ]


@pytest.mark.parametrize(("case", "event"), _foreign_and_malformed())
def test_malformed_or_foreign_event_is_rejected_with_a_log_line_and_no_side_effect(
    waf: WafResources,
    invoke: Invoke,
    caplog: pytest.LogCaptureFixture,
    case: str,
    event: Any,
) -> None:
    """Protects against acting on garbage: nothing is blocked, stored or sent, and the
    log says why the event was refused."""
    put_waf_records({"203.0.113.7": 60})

    result = invoke(event)

    assert result["status"] == "rejected", case
    assert "rejected event" in raw_log_text(caplog)
    assert registry_ips() == []
    assert ip_set_addresses(waf, 4) == []
    assert idempotency_records() == 0
    assert oncall_messages(waf) == []


def test_alarm_and_sweep_publish_emf_metrics(
    waf: WafResources, invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the dashboards and alarms on the responder: IPs blocked, IPs expired,
    lock retries, errors, as CloudWatch embedded metrics."""
    from functions.waf_responder.events import scheduled_sweep_event

    put_waf_records({"203.0.113.7": 6, "203.0.113.9": 6})
    capsys.readouterr()
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    after_alarm = emf_metrics(capsys.readouterr().out)
    assert after_alarm[names.METRIC_WAF_IPS_BLOCKED] == 2
    assert after_alarm[names.METRIC_WAF_LOCK_RETRIES] == 0

    invoke(scheduled_sweep_event())
    assert emf_metrics(capsys.readouterr().out)[names.METRIC_WAF_IPS_EXPIRED] == 0

    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=names.BLOCK_REGISTRY_TABLE)
    with pytest.raises(Exception, match="ResourceNotFoundException"):
        invoke(scheduled_sweep_event())
    assert emf_metrics(capsys.readouterr().out)[names.METRIC_WAF_RESPONDER_ERRORS] == 1


def test_an_attacker_joining_a_long_attack_is_blocked_by_the_next_sweep(
    waf: WafResources, invoke: Invoke
) -> None:
    """EventBridge starts the responder only on the change into ALARM; while the alarm
    stays there, the five-minute sweep looks for new offenders itself."""
    from functions.waf_responder.events import scheduled_sweep_event

    # Given the blocked-requests alarm fired and its offender was blocked
    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    put_waf_records({"203.0.113.7": 12})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert len(oncall_messages(waf)) == 1
    # When a second address joins while the alarm is still in ALARM
    put_waf_records({"198.51.100.44": 9})
    swept = invoke(scheduled_sweep_event())
    # Then the sweep blocks it and tells on-call about it alone
    assert ip_set_addresses(waf, 4) == ["198.51.100.44/32", "203.0.113.7/32"]
    (recheck,) = swept["rechecked"]
    assert recheck["blocked"] == ["198.51.100.44/32"]
    (message,) = oncall_messages(waf)  # each call returns what arrived since the last
    blocked, _, not_blocked = message["Message"].partition("Not blocked")
    assert "Blocked 1 address" in blocked
    assert "198.51.100.44" in blocked
    assert "203.0.113.7" not in blocked
    assert "203.0.113.7  12 requests  already blocked" in not_blocked
    # And a sweep that finds nobody new tells on-call nothing
    assert invoke(scheduled_sweep_event())["rechecked"][0]["status"] == "unchanged"
    assert oncall_messages(waf) == []
    # And once the alarm is back to OK, sweeps only sweep
    alarm_in_state(names.ALARM_WAF_BLOCKED, "OK")
    put_waf_records({"192.0.2.99": 30})
    assert invoke(scheduled_sweep_event())["rechecked"] == []
    assert "192.0.2.99/32" not in ip_set_addresses(waf, 4)


def _never_block(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Point the never-block list at a parameter now holding `value`, and drop the
    cached read (the responder picks a change up within its cache time)."""
    from functions.shared import blocks
    from functions.shared.settings import get_settings

    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER, Value=value, Type="String", Overwrite=True
    )
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", names.NEVER_BLOCK_PARAMETER)
    blocks.clear_caches()
    get_settings.cache_clear()


def test_an_address_put_on_the_never_block_list_leaves_the_ip_set_at_the_next_sweep(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Addresses on the never-block list are never blocked: one added to it after its
    block (the RUNBOOK's remedy for a customer who was blocked) used to stay blocked
    until the block expired, up to 7 days when escalated, as the sweep kept the IP sets
    equal to the registry. The sweep now leaves it out and says so."""
    put_waf_records({"198.51.100.9": 12, "203.0.113.9": 12})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert ip_set_addresses(waf, 4) == ["198.51.100.9/32", "203.0.113.9/32"]

    _never_block(monkeypatch, "198.51.100.0/28")
    swept = invoke(scheduled_sweep_event())

    assert ip_set_addresses(waf, 4) == ["203.0.113.9/32"]
    assert swept["protected"] == ["198.51.100.9/32"]


def test_the_sweep_reads_the_never_block_list_as_it_is_now_not_as_cached(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each instance caches the protected lists for 5 minutes. The sweep reads them
    fresh, so an address on-call adds leaves the IP sets at the next sweep (within its
    5-minute period, as the RUNBOOK says), not a cache lifetime later on top."""
    _never_block(monkeypatch, "192.0.2.0/24")
    put_waf_records({"198.51.100.9": 12})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert ip_set_addresses(waf, 4) == ["198.51.100.9/32"]

    # On-call adds the address; this warm instance read the list moments ago
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=names.NEVER_BLOCK_PARAMETER, Value="198.51.100.9/32", Type="String", Overwrite=True
    )
    swept = invoke(scheduled_sweep_event())

    assert ip_set_addresses(waf, 4) == []
    assert swept["protected"] == ["198.51.100.9/32"]


def test_an_unreadable_protected_list_keeps_every_block_in_the_ip_sets(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_waf_records({"198.51.100.9": 12})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    monkeypatch.setenv("NEVER_BLOCK_CIDRS_PARAMETER", "/babyshield/missing-parameter")
    from functions.shared import blocks

    blocks.clear_caches()
    swept = invoke(scheduled_sweep_event())
    assert ip_set_addresses(waf, 4) == ["198.51.100.9/32"]
    assert swept["protected"] == []


def test_an_ipv6_client_rotating_addresses_inside_its_64_is_one_offender(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An IPv6 client holds a /64 and can take a new address in it for every request.
    Counted per /128, 20 failed sign-ins at two per address (threshold 3) blocked
    nothing. They are counted and blocked per /64 (IPV6_OFFENDER_PREFIX), as the API's
    sign-in backoff already treats a /64 as one source."""
    put_failed_sign_ins({f"2001:db8:1:2::{n:x}": 2 for n in range(1, 11)})

    result = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))

    assert result["blocked"] == ["2001:db8:1:2::/64"]
    assert ip_set_addresses(waf, 6) == ["2001:db8:1:2::/64"]
    assert "20 requests" in oncall_messages(waf)[0]["Message"]


def test_the_ipv6_offender_prefix_is_a_setting(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.shared.settings import get_settings

    monkeypatch.setenv("IPV6_OFFENDER_PREFIX", "128")
    get_settings.cache_clear()
    put_failed_sign_ins({"2001:db8:1:2::1": 3, "2001:db8:1:2::2": 2})

    result = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))

    assert result["blocked"] == ["2001:db8:1:2::1/128"]


def test_an_alarm_with_no_offender_tells_oncall_what_no_address_reached(
    waf: WafResources, invoke: Invoke
) -> None:
    put_waf_records({"203.0.113.7": 2})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    (message,) = oncall_messages(waf)
    assert (
        "Blocked nothing: no address reached 5 blocked requests in the offender window "
        "(2 log record(s) read)." in message["Message"]
    )
