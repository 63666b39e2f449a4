"""What the responder tells on-call, checked against what it wrote to the block registry
and the WAF IP sets, on the moto server: retries after a failed message, blocks that
expire while a look runs, and the undo commands pasted into `babyshield`."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.shared import blocks, names
from functions.shared.settings import get_settings
from functions.waf_responder import notify, respond
from functions.waf_responder.events import alarm_state_change_event
from ops.cli import main
from tests.support.waf import (
    WafResources,
    ip_set_addresses,
    oncall_messages,
    put_log_lines,
    put_waf_records,
    waf_record,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]

A = "203.0.113.7"
B = "198.51.100.9"


def _section(text: str, header: str) -> list[str]:
    """The indented lines under the line starting with `header`, up to the next blank."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        return []
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line.strip())
    return out


def _listed(section: list[str]) -> set[str]:
    return {line.split()[0] for line in section if not line.startswith("...")}


def _undo_commands(text: str) -> list[str]:
    return _section(text, "To undo:")


def _first_attempt_without_sns(invoke: Invoke, event: dict[str, Any], monkeypatch: Any) -> None:
    """The event's first attempt blocks and then cannot publish (SNS unreachable): the
    invocation fails, as Lambda then retries it with the same event."""
    real_publish = notify.publish

    def sns_down(notification: notify.Notification) -> str | None:
        raise ConnectionError("SNS went away")

    monkeypatch.setattr(respond, "publish", sns_down)
    with pytest.raises(ConnectionError):
        invoke(event)
    monkeypatch.setattr(respond, "publish", real_publish)


def test_a_retry_does_not_call_its_own_earlier_block_over_the_cap(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event blocked A on its first attempt, whose message was never sent; WAF
    log records arriving late make the retry's look rank a heavier offender B first.
    A counts against the cap of 1 and is announced as blocked, never also as "over the
    cap"; B is over the cap: the event holds one block, as its cap says."""
    monkeypatch.setenv("MAX_NEW_BLOCKS_PER_EVENT", "1")
    alarm_at = datetime.now(UTC)
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED, at=alarm_at)
    put_waf_records({A: 12})
    _first_attempt_without_sns(invoke, event, monkeypatch)
    assert ip_set_addresses(waf, 4) == [f"{A}/32"]
    # B's records from before the alarm reach the log group only now (delivery lag).
    stamp = int((alarm_at - timedelta(seconds=5)).timestamp() * 1000)
    put_log_lines(names.WAF_LOG_GROUP, [json.dumps(waf_record(B, at_ms=stamp))] * 30, at_ms=stamp)

    retried = invoke(event)

    (message,) = oncall_messages(waf)
    text = message["Message"]
    blocked = _listed(_section(text, "Blocked "))
    not_blocked = _listed(_section(text, "Not blocked"))
    assert not blocked & not_blocked, (
        f"the message names {sorted(blocked & not_blocked)} as blocked and as not blocked:\n{text}"
    )
    assert blocked == {A}
    assert B in not_blocked
    made = [b.ip for b in blocks.list_blocks() if b.event_id == event["id"]]
    assert len(made) <= 1, f"one event holds {made} with MAX_NEW_BLOCKS_PER_EVENT=1"
    assert retried["blocked_count"] == len(made)


def test_a_retry_does_not_announce_a_block_the_never_block_list_keeps_out_of_the_waf(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt blocked A and could not publish; meanwhile A was put on the
    never-block list (the runbook's step for a customer who calls in). The sync leaves
    A out of the IP set, and the retry's message does not announce A as blocked."""
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    put_waf_records({A: 12})
    _first_attempt_without_sns(invoke, event, monkeypatch)
    monkeypatch.setenv("NEVER_BLOCK_CIDRS", "203.0.113.0/24")
    get_settings.cache_clear()

    invoke(event)

    assert ip_set_addresses(waf, 4) == []
    (message,) = oncall_messages(waf)
    text = message["Message"]
    assert A not in _listed(_section(text, "Blocked ")), (
        f"the message announces {A} as blocked, but the WAF does not hold it:\n{text}"
    )


def test_a_retry_still_announces_its_v6_block_the_waf_keeps_around_a_protected_address(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An IPv6 offender is blocked as its /64. The event's first attempt blocked it and
    could not publish; meanwhile one partner address inside that /64 was put on the
    never-block list. The sync cuts only that address out (blocks.enforceable_blocks),
    so the WAF still refuses the rest of the /64, and the retry's message says so: the
    /64 is announced as blocked with its undo command, naming the exempt address,
    never as "not blocked ... on the never-block list" (which holds only for a block
    wholly inside a list, as in the test above)."""
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    put_waf_records({"2001:db8:1:2::9": 12})
    _first_attempt_without_sns(invoke, event, monkeypatch)
    assert ip_set_addresses(waf, 6) == ["2001:db8:1:2::/64"]
    # A partner's address in that /64 goes on the never-block list (runbook step 3)
    monkeypatch.setenv("NEVER_BLOCK_CIDRS", "2001:db8:1:2::10/128")
    get_settings.cache_clear()

    invoke(event)

    held = ip_set_addresses(waf, 6)
    # the rest of the /64 is refused at the WAF
    assert held
    assert "2001:db8:1:2::10/128" not in held
    (message,) = oncall_messages(waf)
    text = message["Message"]
    assert "on the never-block list" not in text, text
    assert "Blocked 1 address(es):" in text, text
    (line,) = _section(text, "Blocked ")
    assert line.strip().startswith("2001:db8:1:2::/64"), text
    assert "except 2001:db8:1:2::10 (on a protected list)" in line, text
    assert "2001:db8:1:2::/64" in text.split("To undo:")[-1], text


def test_an_offender_whose_block_ends_during_the_look_is_not_called_already_blocked(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's earlier block ends while the Logs Insights query runs (queries take seconds,
    up to LOGS_QUERY_DEADLINE_SECONDS): the decision is made at the time after the
    look, so A is not called "already blocked" by a block the same invocation's sync
    removes. Nor is it blocked again: every record the look read is older than the
    block's end, what the block was for (decide.py); the message says so."""
    now = int(time.time())
    earlier = blocks.Block(
        ipaddress.ip_network(f"{A}/32"),
        f"{names.ALARM_FAILED_SIGNINS}: API log",
        names.ALARM_FAILED_SIGNINS,
        "auto",
        now - 3600,
        now - 3600,
        now + 2,
        requests=9,
        event_id="earlier-event",
    )
    blocks.registry().put_many([earlier], memory_seconds=30 * 86400)
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == [f"{A}/32"]
    put_waf_records({A: 12})
    from functions.waf_responder.offenders import find_offenders as real_find

    def query_still_running(*args: Any, **kwargs: Any) -> Any:
        found = real_find(*args, **kwargs)
        while time.time() < earlier.blocked_until + 0.5:
            time.sleep(0.1)
        return found

    monkeypatch.setattr(respond, "find_offenders", query_still_running)

    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    (message,) = oncall_messages(waf)
    text = message["Message"]
    assert "already blocked" not in text
    (line,) = _section(text, "Not blocked ")
    assert line.startswith(A)
    assert f"(by {names.ALARM_FAILED_SIGNINS}); 0 seen since" in line
    assert ip_set_addresses(waf, 4) == []


def test_both_undo_commands_of_a_v4_and_v6_message_work_when_pasted(
    waf: WafResources, invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two commands the message prints, pasted as they stand into
    `babyshield` (ops.cli.main), lift exactly what the message announced, the IPv6
    client as its /64; the second, after the first, says there is nothing left."""
    put_waf_records({A: 12, "2001:db8::9": 4, "2001:db8::a": 3, "192.0.2.44": 2})
    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    (message,) = oncall_messages(waf)
    text = message["Message"]
    assert _listed(_section(text, "Blocked ")) == {A, "2001:db8::/64"}
    assert "2001:db8::/64  7 requests  until " in text
    by_address, by_event = _undo_commands(text)
    assert by_event == f"babyshield waf unblock --event {result['event_id']}"

    assert main([*by_address.split()[1:], "--by", "oncall"]) == 0
    out = capsys.readouterr().out
    assert f"unblocked {A} " in out
    assert "unblocked 2001:db8::/64 " in out
    assert ip_set_addresses(waf, 4) == []
    assert ip_set_addresses(waf, 6) == []
    assert blocks.list_blocks() == []

    assert main([*by_event.split()[1:], "--by", "oncall"]) == 1
    after = capsys.readouterr()
    assert "unblocked already (by oncall)" in after.out
    assert "nothing was unblocked" in after.err
