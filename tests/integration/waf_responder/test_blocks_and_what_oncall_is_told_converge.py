"""The block registry, both IP sets and what on-call is told agree under races,
retries and overlapping networks, against the moto server.

Races are forced at named points (inside the look, between a read and a write), not
hoped for. Only GetRateBasedStatementManagedKeys, which moto lacks, is answered by a
botocore Stubber (the `rate_rule` fixture).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import pytest

from functions.shared import blocks, names
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from tests.integration.waf_responder.conftest import limited
from tests.support.waf import (
    WafResources,
    ip_set_addresses,
    oncall_messages,
    put_waf_records,
    responders_block,
)

A = "203.0.113.7/32"


def _sns_down(notification: Any) -> str | None:
    raise ConnectionError("SNS went away")


# --- A retry announcing what the registry no longer holds ------------------------------


def test_a_retry_does_not_announce_a_block_oncall_released_during_its_look(
    waf: WafResources, invoke: Any, rate_rule: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate alarm's first attempt blocks A and fails to publish. While its retry
    reads the offenders (the look can take the whole query deadline), on-call, who saw
    A in `waf list`, unblocks it. The retry must not tell on-call "Blocked 1 address:
    203.0.113.7" for an address the registry holds as released and the IP set does not
    hold: the earlier attempt's blocks are read as the retry's claim last read them."""
    from functions.waf_responder import notify, respond

    event = alarm_state_change_event(names.ALARM_WAF_RATE)
    real_publish = notify.publish
    monkeypatch.setattr(respond, "publish", _sns_down)
    limited(rate_rule, "203.0.113.7/32")
    with pytest.raises(ConnectionError):
        invoke(event)
    assert [b.ip for b in blocks.list_blocks()] == [A]

    # The retry: SNS is back; the rate rule limits nobody now (A is refused earlier),
    # and on-call unblocks A while the retry is reading the offenders.
    monkeypatch.setattr(respond, "publish", real_publish)
    limited(rate_rule)
    from functions.waf_responder.offenders import find_offenders as real_find

    def find_while_oncall_unblocks(*args: Any, **kwargs: Any) -> Any:
        lifted = blocks.unblock(["203.0.113.7"], actor="oncall")
        assert [b.ip for b in lifted.changed] == [A]
        return real_find(*args, **kwargs)

    monkeypatch.setattr(respond, "find_offenders", find_while_oncall_unblocks)
    retried = invoke(event)

    # The registry and the IP set agree: A is released and not blocked ...
    assert blocks.list_blocks() == []
    assert ip_set_addresses(waf, 4) == []
    # ... so neither the answer nor the message may say the event blocked it.
    messages = [m["Message"] for m in oncall_messages(waf)]
    assert len(messages) == 1
    assert retried["blocked_count"] == 0, messages[0]
    assert "Blocked 1 address" not in messages[0]


# --- Unblocking a network that holds narrower blocks -----------------------------------


def test_unblocking_a_network_names_the_blocks_inside_it_that_stay(
    waf: WafResources, invoke: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The responder blocked 198.51.100.7; a customer reports their office range
    198.51.100.0/24 refused, and on-call runs `babyshield waf unblock 198.51.100.0/24`.
    The WAF keeps refusing 198.51.100.7, inside that range: the command must not say
    "not blocked: 198.51.100.0/24" alone, but name the block inside it that stays."""
    from ops.cli import main

    blocks.registry().put_many(
        [responders_block("198.51.100.7/32", event_id="e1")], memory_seconds=86400
    )
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == ["198.51.100.7/32"]

    code = main(["waf", "unblock", "198.51.100.0/24", "--by", "oncall"])

    captured = capsys.readouterr()
    # Still refused at the WAF, inside the range on-call asked to let through ...
    assert ip_set_addresses(waf, 4) == ["198.51.100.7/32"]
    # ... so the command must not answer that the range is not blocked.
    assert "not blocked: 198.51.100.0/24\n" not in captured.out, captured.out + captured.err
    assert "198.51.100.7" in captured.out + captured.err, captured.out + captured.err
    assert code == 1


# --- A sweep's failed look, retried after its alarm cleared ----------------------------


def test_a_failed_recheck_whose_alarm_cleared_before_the_retry_still_tells_oncall(
    waf: WafResources, invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep finds the blocked-requests alarm still in ALARM and looks again: it
    blocks 198.51.100.44 and cannot publish, so the invocation fails to be retried
    ("the retry announces what the failed look blocked"). The block works: the attack
    stops and the alarm returns to OK before EventBridge's retry a minute later. The
    retry must still announce that block, with its undo command: else the address
    stays blocked for hours and on-call never hears of it."""
    from functions.shared.settings import get_settings
    from functions.waf_responder.respond import RecheckFailed
    from tests.support.waf import alarm_in_state

    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    put_waf_records({"198.51.100.44": 9})
    sweep_event = scheduled_sweep_event()
    monkeypatch.setenv("ONCALL_TOPIC_ARN", waf.topic_arn + "-gone")
    get_settings.cache_clear()
    with pytest.raises(RecheckFailed):
        invoke(sweep_event)
    assert ip_set_addresses(waf, 4) == ["198.51.100.44/32"]

    # The block stopped the attack: the alarm is OK by the time the event is retried.
    alarm_in_state(names.ALARM_WAF_BLOCKED, "OK")
    monkeypatch.setenv("ONCALL_TOPIC_ARN", waf.topic_arn)
    get_settings.cache_clear()
    invoke(sweep_event)

    assert ip_set_addresses(waf, 4) == ["198.51.100.44/32"]
    messages = [m["Message"] for m in oncall_messages(waf)]
    assert any("babyshield waf unblock 198.51.100.44" in m for m in messages), messages


# --- A protected address inside a blocked network --------------------------------------


def test_one_address_put_on_the_never_block_list_does_not_unblock_its_whole_network(
    waf: WafResources, invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On-call blocked a scanner farm, 198.51.100.0/24, by hand. Later a partner's
    server, 198.51.100.9, is put on the never-block list (RUNBOOK: "Keep it from
    happening again"). The IP set must keep the rest of the /24: else the other 255
    addresses are let through, and when 198.51.100.7 in the farm attacks, on-call
    reads it is "already blocked, waiting for room in the full IP set" of an IP set
    that is empty."""
    from functions.shared.settings import get_settings

    blocks.block(
        ["198.51.100.0/24"], reason="scanner farm", duration_seconds=4 * 3600, actor="oncall"
    )
    assert ip_set_addresses(waf, 4) == ["198.51.100.0/24"]
    monkeypatch.setenv("NEVER_BLOCK_CIDRS", "198.51.100.9/32")
    get_settings.cache_clear()
    invoke(scheduled_sweep_event())
    # `waf list` reads it as held in part: the protected address is cut out.
    assert blocks.enforcement(blocks.list_blocks()) == {"198.51.100.0/24": "part"}

    put_waf_records({"198.51.100.7": 30})
    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    held = ip_set_addresses(waf, 4)
    refused = any(ipaddress.ip_address("198.51.100.7") in ipaddress.ip_network(c) for c in held)
    assert refused, (
        f"198.51.100.7 attacks through; the IP set holds {held}; on-call was told: "
        f"{result['skipped']}"
    )
    assert not any("waiting for room in the full IP set" in s["why"] for s in result["skipped"]), (
        result["skipped"]
    )


# --- `waf list` and blocks the WAF does not hold ----------------------------------------


def test_waf_list_tells_a_block_left_out_of_the_full_ip_set_from_an_enforced_one(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the IP set limit the registry keeps live blocks the WAF does not hold
    (plan_ip_set). During an attack on-call checks `babyshield waf list` (RUNBOOK:
    "Confirm: babyshield waf list shows the address"): a left-out block must not look
    like an enforced one while its requests pass the WAF."""
    from functions.shared.settings import get_settings
    from ops.cli import main

    monkeypatch.setenv("IPSET_MAX_ADDRESSES", "1")
    get_settings.cache_clear()
    older = responders_block("203.0.113.7/32", event_id="e1")
    newer = responders_block("198.51.100.3/32", event_id="e2")
    blocks.registry().put_many(
        [replace(older, last_seen=older.last_seen - 600), newer], memory_seconds=86400
    )
    report = blocks.sync_ip_sets()
    assert [b.ip for b in report.left_out] == ["203.0.113.7/32"]
    assert ip_set_addresses(waf, 4) == ["198.51.100.3/32"]
    capsys.readouterr()

    assert main(["waf", "list"]) == 0
    table = capsys.readouterr().out
    (line,) = [row for row in table.splitlines() if row.startswith("203.0.113.7 ")]
    (enforced,) = [row for row in table.splitlines() if row.startswith("198.51.100.3 ")]
    # The IN WAF column, and a line naming what the WAF does not hold.
    assert " none " in line, table
    assert " all " in enforced, table
    assert "not (wholly) in the WAF's IP sets: 203.0.113.7" in table


def test_waf_list_still_lists_the_registry_when_the_ip_sets_cannot_be_read(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The registry is what `waf list` is asked for: an IP set it cannot read (a
    wrong id, a missing permission) leaves IN WAF unknown, said once, not an error."""
    from functions.shared.settings import get_settings
    from ops.cli import main

    blocks.registry().put_many(
        [responders_block("203.0.113.7/32", event_id="e1")], memory_seconds=86400
    )
    monkeypatch.setenv("AUTO_BLOCK_IPSET_V4_ID", "00000000-0000-0000-0000-000000000000")
    get_settings.cache_clear()
    capsys.readouterr()

    assert main(["waf", "list"]) == 0
    table = capsys.readouterr().out
    (line,) = [row for row in table.splitlines() if row.startswith("203.0.113.7 ")]
    assert " - " in line
    assert "IN WAF unknown: the auto-block IP sets could not be read (WAFNonexistentItem" in table


def test_a_throttled_ip_set_read_is_tried_again_like_a_throttled_write(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WAF throttles GetIPSet as it throttles UpdateIPSet (many writers during an
    attack): the sync backs off and reads again, rather than failing the responder's
    invocation or leaving on-call's change pending on the first refusal."""
    from botocore.exceptions import ClientError

    real = blocks._wafv2()
    refused = {"reads": 0}

    class ThrottledOnce:
        def get_ip_set(self, **kwargs: Any) -> Any:
            if refused["reads"] == 0:
                refused["reads"] += 1
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetIPSet"
                )
            return real.get_ip_set(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(blocks, "_wafv2", lambda: ThrottledOnce())
    monkeypatch.setattr(blocks, "_backoff", lambda attempt: None)
    blocks.registry().put_many(
        [responders_block("203.0.113.7/32", event_id="e1")], memory_seconds=86400
    )

    report = blocks.sync_ip_sets()

    assert refused["reads"] == 1
    assert report.lock_retries == 1
    assert ip_set_addresses(waf, 4) == [A]
