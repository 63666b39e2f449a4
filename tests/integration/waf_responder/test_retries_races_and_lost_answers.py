"""The WAF responder's and on-call's writes to the block registry and the IP sets, under
retries, races and lost answers, against the moto server.

Races are forced at named points (after a registry read, before a write), not hoped for.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.shared import blocks, names
from tests.support.waf import (
    WafResources,
    hold_sweep_after_registry_read,
    ip_set_addresses,
    responders_block,
)

A = "203.0.113.7/32"
B = "203.0.113.8/32"


def _responder_writes_between_read_and_write(
    monkeypatch: pytest.MonkeyPatch, ip: str, *, released: bool = False
) -> None:
    """On the first claim pass of the next change, a responder writes `ip` after the
    change's registry read and before its writes (so that row's write is refused and
    the change is decided again on a second pass)."""
    real_claim = blocks.BlockRegistry.claim
    passes: list[int] = []

    def claim(self: blocks.BlockRegistry, *args: Any, **kwargs: Any) -> list[str]:
        passes.append(1)
        if len(passes) == 1:
            row = responders_block(ip, event_id="rival-event")
            blocks.registry().put_many([row], memory_seconds=86400)
        return real_claim(self, *args, **kwargs)

    monkeypatch.setattr(blocks.BlockRegistry, "claim", claim)


# --- An operator's change decided on a second pass ----------------------------------


def test_a_hand_block_decided_again_does_not_report_replacing_its_own_block(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On-call blocks A and B; a responder blocks B between the command's read and its
    write, so the command decides again. On that second pass A's row is the one this
    very command wrote on the first: only B's block is reported replaced (A's own write
    was once reported as a block it replaced, in the CLI, --json and POST /admin/blocks)."""
    _responder_writes_between_read_and_write(monkeypatch, B)

    from ops.cli import main

    code = main(
        ["waf", "block", "203.0.113.7", "203.0.113.8", "--reason", "scanner", "--by", "oncall"]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert ip_set_addresses(waf, 4) == [A, B]
    assert [b.ip for b in blocks.list_blocks()] == [A, B]
    # B's responder block was really replaced; A had no block before this command.
    a_lines = out.split("blocked 203.0.113.8")[0]
    assert "replaces the block" not in a_lines, f"A reported as replacing a block:\n{out}"


def test_an_unblock_decided_again_does_not_call_a_live_block_expired(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On-call unblocks A and B, both live; a responder re-writes B between the
    command's read and its write, so the command decides again. On that pass A's row is
    this command's own release: A is reported unblocked (it was once called expired,
    with a date in the future)."""
    blocks.registry().put_many(
        [responders_block(A, event_id="e1"), responders_block(B, event_id="e1")],
        memory_seconds=86400,
    )
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == [A, B]
    _responder_writes_between_read_and_write(monkeypatch, B)

    from ops.cli import main

    code = main(["waf", "unblock", "203.0.113.7", "203.0.113.8", "--by", "oncall"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert blocks.list_blocks() == []
    assert ip_set_addresses(waf, 4) == []
    assert "unblocked 203.0.113.8" in out
    assert "unblocked 203.0.113.7" in out, f"a live block lifted here, called expired:\n{out}"


# --- The on-call message after a retried rate-alarm event -----------------------------


def test_a_retried_rate_alarm_announces_the_block_its_failed_attempt_made(
    waf: WafResources, invoke: Any, rate_rule: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt blocks A (rate-limited then), writes the registry and the IP set,
    and fails to publish. The event is retried: the rate rule no longer limits A (the
    auto-block rule, ahead of it, now refuses A's requests before they are counted).
    The retry still announces A, with its undo command: it once decided on the rate
    rule's keys of now alone and told on-call "Blocked nothing".

    GetRateBasedStatementManagedKeys is answered by a botocore Stubber (moto lacks it)."""
    from functions.waf_responder import notify, respond
    from functions.waf_responder.events import alarm_state_change_event
    from tests.integration.waf_responder.conftest import limited
    from tests.support.waf import oncall_messages

    event = alarm_state_change_event(names.ALARM_WAF_RATE)
    real_publish = notify.publish

    def sns_down(notification: Any) -> str | None:
        raise ConnectionError("SNS went away")

    monkeypatch.setattr(respond, "publish", sns_down)
    limited(rate_rule, "203.0.113.7/32")
    with pytest.raises(ConnectionError):
        invoke(event)
    assert [b.ip for b in blocks.list_blocks()] == [A]
    assert ip_set_addresses(waf, 4) == [A]
    assert oncall_messages(waf) == []

    # The retry: SNS is back; the rate rule limits nobody now (A is refused earlier).
    monkeypatch.setattr(respond, "publish", real_publish)
    limited(rate_rule)
    retried = invoke(event)

    assert [b.ip for b in blocks.list_blocks()] == [A]
    assert [b.event_id for b in blocks.list_blocks()] == [event["id"]]
    messages = [m["Message"] for m in oncall_messages(waf)]
    assert len(messages) == 1
    assert "babyshield waf unblock 203.0.113.7" in messages[0], (
        f"A is blocked by this event but its only message does not say so:\n{messages[0]}"
    )
    assert retried["blocked"] == [A]


# --- Lost answers and syncs -------------------------------------------------------------


def test_a_lost_update_ip_set_answer_still_ends_with_the_block_enforced_once(
    waf: WafResources, invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto applies the first UpdateIPSet and its answer is lost; botocore's retry
    with the same LockToken is refused (WAFOptimisticLockException, from moto itself),
    and the sync re-reads and ends with the block in the set and one message."""
    from functions.waf_responder.events import alarm_state_change_event
    from tests.support.aws_faults import DROP_ANSWER, faulty_aws_endpoint, first_only
    from tests.support.waf import oncall_messages, put_waf_records

    put_waf_records({"203.0.113.7": 9})
    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = first_only(lambda target, body: target.endswith(".UpdateIPSet"), DROP_ANSWER)
        result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
        assert faults.disturbed(DROP_ANSWER), "no UpdateIPSet answer was lost"
        assert result["blocked"] == [A]
        assert ip_set_addresses(waf, 4) == [A]
        assert len(oncall_messages(waf)) == 1


def test_an_unblock_landing_inside_a_responders_sync_is_not_undone(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync (the sweep) reads the lock tokens and the registry with A live; on-call
    unblocks A before that sync writes. The unblock's own write moves the lock token, so
    the stale sync is refused, re-reads, and A stays out of the set."""
    import threading

    blocks.registry().put_many([responders_block(A, event_id="e1")], memory_seconds=86400)
    blocks.sync_ip_sets()
    set_ip_set_v6 = ["2001:db8:1:2::/64"]
    blocks.registry().put_many(
        [responders_block("2001:db8:1:2::/64", event_id="e1")], memory_seconds=86400
    )
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == [A]
    assert ip_set_addresses(waf, 6) == set_ip_set_v6

    read, go = hold_sweep_after_registry_read(monkeypatch)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            blocks.sync_ip_sets()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=sweep, name="sweep")
    thread.start()
    try:
        assert read.wait(30)
        # Odd spellings of both blocks: bare IPv4-mapped, and an uppercase, padded IPv6.
        result = blocks.unblock(
            ["::ffff:203.0.113.7", "2001:0DB8:0001:0002:0000:0000:0000:0000/64"], actor="oncall"
        )
    finally:
        go.set()
        thread.join(60)
    assert errors == []
    assert sorted(b.ip for b in result.changed) == ["2001:db8:1:2::/64", A]
    assert not result.pending
    assert ip_set_addresses(waf, 4) == []
    assert ip_set_addresses(waf, 6) == []
    assert blocks.list_blocks() == []
