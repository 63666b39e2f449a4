"""An operator's unblock holds: the responder blocks an unblocked address again only on
evidence newer than the unblock, while its alarm stays in ALARM and the sweep looks again."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from functions.shared import blocks, names
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from ops.cli import main
from tests.integration.waf_responder.conftest import limited
from tests.support.waf import (
    WafResources,
    alarm_in_state,
    ip_set_addresses,
    oncall_messages,
    put_failed_sign_ins,
    put_waf_records,
    registry_ips,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def _offend(alarm: str, ip: str) -> None:
    if alarm == names.ALARM_WAF_BLOCKED:
        put_waf_records({ip: 12})
    else:
        put_failed_sign_ins({ip: 5})


def _past_this_second() -> None:
    # Registry times are whole seconds: evidence "after" the unblock is a later second.
    time.sleep(1.05)


@pytest.mark.parametrize("alarm", [names.ALARM_WAF_BLOCKED, names.ALARM_FAILED_SIGNINS])
def test_an_unblocked_address_stays_unblocked_while_its_alarm_stays_in_alarm(
    waf: WafResources, invoke: Invoke, alarm: str
) -> None:
    """The sweep's recheck reads the same window as the first look: the records that
    caused the block are still in it, and must not block the address again."""
    # Given an alarm fired and blocked a (legitimate) customer, and stays in ALARM
    alarm_in_state(alarm, "ALARM")
    _offend(alarm, "203.0.113.7")
    invoke(alarm_state_change_event(alarm))
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    oncall_messages(waf)
    # When on-call unblocks it, as the runbook says
    result = blocks.unblock(["203.0.113.7"], actor="oncall")
    assert [b.ip for b in result.changed] == ["203.0.113.7/32"]

    # Then the next sweep, with nothing new from the customer, leaves it unblocked
    swept = invoke(scheduled_sweep_event())
    (recheck,) = swept["rechecked"]
    assert recheck["status"] == "unchanged"
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []

    # And new evidence after the unblock does block it again, as a first offence
    _past_this_second()
    _offend(alarm, "203.0.113.7")
    swept = invoke(scheduled_sweep_event())
    assert swept["rechecked"][0]["blocked"] == ["203.0.113.7/32"]
    assert ip_set_addresses(waf, 4) == ["203.0.113.7/32"]
    (again,) = blocks.list_blocks()
    assert (again.offences, again.released_at) == (1, None)
    (message,) = oncall_messages(waf)
    assert "Blocked 1 address" in message["Message"]


def test_unblocking_a_whole_event_holds_against_the_sweep(
    waf: WafResources, invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    """`unblock --event`: the alarm itself was wrong, and is usually still in ALARM."""
    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    put_waf_records({"203.0.113.1": 9, "203.0.113.2": 9})
    fired = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    oncall_messages(waf)

    assert main(["waf", "unblock", "--event", fired["event_id"], "--by", "oncall"]) == 0
    capsys.readouterr()
    swept = invoke(scheduled_sweep_event())

    assert swept["rechecked"][0]["status"] == "unchanged"
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []
    # The registry remembers both as released, not as offenders
    assert registry_ips() == ["203.0.113.1/32", "203.0.113.2/32"]
    assert all(
        b.released_by == "oncall" and b.offences == 0
        for b in blocks.list_blocks(include_expired=True)
    )


def test_rate_rule_keys_do_not_undo_an_unblock_until_the_alarm_fires_again(
    waf: WafResources, invoke: Invoke, rate_rule: Stubber
) -> None:
    """The rate rule's keys carry no time: one still listed after the unblock may be
    the very limit the operator cleared. It counts again once the alarm has cleared
    and fired since the unblock."""
    # Given the rate alarm fired, blocked an address, and stays in ALARM
    alarm_in_state(names.ALARM_WAF_RATE, "ALARM")
    limited(rate_rule, "203.0.113.60/32")
    invoke(alarm_state_change_event(names.ALARM_WAF_RATE))
    assert ip_set_addresses(waf, 4) == ["203.0.113.60/32"]
    oncall_messages(waf)
    # When on-call unblocks it, and the rule still lists it at the next sweep
    blocks.unblock(["203.0.113.60"], actor="oncall")
    limited(rate_rule, "203.0.113.60/32")
    swept = invoke(scheduled_sweep_event())

    # Then it stays unblocked, and on-call hears nothing
    assert swept["rechecked"][0]["status"] == "unchanged"
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []

    # When the alarm clears and fires again later, still listing it
    _past_this_second()
    limited(rate_rule, "203.0.113.60/32")
    result = invoke(alarm_state_change_event(names.ALARM_WAF_RATE, at=datetime.now(UTC)))

    # Then that is a new look: it is blocked again
    assert result["blocked"] == ["203.0.113.60/32"]
    assert ip_set_addresses(waf, 4) == ["203.0.113.60/32"]
    rate_rule.assert_no_pending_responses()


def test_evidence_from_before_an_unblock_is_not_added_to_newer_evidence(
    waf: WafResources, invoke: Invoke
) -> None:
    """One blocked request after the unblock (threshold 5) used to block the address
    again: the 12 records on-call had cleared were counted with it. Only the newer
    records count, and they must reach the threshold by themselves."""
    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    put_waf_records({"203.0.113.7": 12})
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    oncall_messages(waf)
    blocks.unblock(["203.0.113.7"], actor="oncall")

    _past_this_second()
    put_waf_records({"203.0.113.7": 1})
    swept = invoke(scheduled_sweep_event())
    assert swept["rechecked"][0]["status"] == "unchanged"
    assert ip_set_addresses(waf, 4) == []

    put_waf_records({"203.0.113.7": 4})
    swept = invoke(scheduled_sweep_event())
    assert swept["rechecked"][0]["blocked"] == ["203.0.113.7/32"]
