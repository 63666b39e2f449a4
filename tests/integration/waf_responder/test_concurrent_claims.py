"""Concurrent writers of one block: two responders, an operator, the sweep, a retry.

Every race is forced, not hoped for: one side is held at a named point (after its
registry read, before its write) while the other runs, against the moto server.
moto checks WAF lock tokens itself (UpdateIPSet refuses a stale one), so no call
is stubbed here.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from functions.shared import blocks, names
from functions.waf_responder import decide as decide_module
from functions.waf_responder import notify, respond
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from tests.support.aws import REGION
from tests.support.waf import (
    WafResources,
    hold_sweep_after_registry_read,
    ip_set_addresses,
    oncall_messages,
    put_failed_sign_ins,
    put_waf_records,
    raw_registry_item,
    registry_ips,
    responders_block,
    set_ip_set,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
X = "203.0.113.7/32"


def _row(ip: str) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=names.BLOCK_REGISTRY_TABLE,
        Key={names.TABLE_PARTITION_KEY: {"S": ip}},
        ConsistentRead=True,
    )["Item"]
    return item


class _Runner:
    """Runs calls in threads and keeps their answers and errors; `gates` are opened
    at teardown, so a test failing while a thread is held does not leave it waiting."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self.gates: list[threading.Event] = []
        self._threads: list[threading.Thread] = []

    def start(self, name: str, call: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.results[name] = call()
            except BaseException as exc:  # noqa: BLE001 - reported by join()
                self.errors.append(exc)

        thread = threading.Thread(target=run, name=name)
        self._threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads)
        assert self.errors == []


@pytest.fixture
def runner() -> Iterator[_Runner]:
    started = _Runner()
    yield started
    for gate in started.gates:
        gate.set()
    for thread in started._threads:
        thread.join(timeout=60)


def _hold_first_decide(monkeypatch: pytest.MonkeyPatch, gate: Callable[[], object]) -> None:
    """Each thread's first decision waits on `gate`: its registry read is done, its
    write is not."""
    real = decide_module.decide
    held = threading.local()

    def decide(*args: Any, **kwargs: Any) -> Any:
        if not getattr(held, "done", False):
            held.done = True
            gate()
        return real(*args, **kwargs)

    monkeypatch.setattr(respond, "decide", decide)


def test_two_alarms_claiming_one_address_create_one_block_and_one_message_naming_it(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch, runner: _Runner
) -> None:
    """The known defect: two responders for two alarms both read an empty registry,
    both wrote the address (the later write replacing the earlier's alarm, reason,
    event and a four-hour expiry by a one-hour one) and both told on-call they had
    blocked it, so the first message's `unblock --event` named nothing."""
    monkeypatch.setenv("BLOCK_EXPIRY_BY_ALARM", f"{names.ALARM_FAILED_SIGNINS}=3600")
    # Given one address behind both alarms
    put_waf_records({"203.0.113.7": 12})
    put_failed_sign_ins({"203.0.113.7": 5})
    # And both responders held after their registry reads, until both have read
    both_read = threading.Barrier(2, timeout=30)
    _hold_first_decide(monkeypatch, both_read.wait)
    events = {
        alarm: alarm_state_change_event(alarm)
        for alarm in (names.ALARM_WAF_BLOCKED, names.ALARM_FAILED_SIGNINS)
    }

    # When both run at once
    for alarm, event in events.items():
        runner.start(alarm, functools.partial(invoke, event))
    runner.join()

    # Then exactly one of them blocked it; the other saw the block and left it alone
    winners = [a for a, r in runner.results.items() if r["blocked_count"]]
    assert len(winners) == 1, runner.results
    (winner,) = winners
    (loser,) = set(events) - {winner}
    assert runner.results[winner]["blocked"] == [X]
    assert runner.results[loser]["blocked_count"] == 0
    assert runner.results[loser]["skipped"] == [
        {
            "ip": X,
            "requests": runner.results[loser]["skipped"][0]["requests"],
            "why": f"already blocked (by {winner})",
        }
    ]
    # And the registry row is the winner's, whole: its event, alarm and expiry
    row = _row(X)
    assert row["event_id"]["S"] == events[winner]["id"]
    assert row["alarm"]["S"] == winner
    expected_seconds = 3600 if winner == names.ALARM_FAILED_SIGNINS else 4 * 3600
    left = int(row["blocked_until"]["N"]) - time.time()
    assert expected_seconds - 60 < left <= expected_seconds
    assert int(row["first_seen"]["N"]) <= int(row["last_seen"]["N"])
    assert row["offences"]["N"] == "1"
    # And the IP set agrees with the registry
    assert ip_set_addresses(waf, 4) == [X]
    # And one message says it was blocked, the other that it already was
    messages = oncall_messages(waf)
    assert len(messages) == 2
    blocked = [m for m in messages if "Blocked 1 address" in m["Message"]]
    assert len(blocked) == 1
    assert f"--event {events[winner]['id']}" in blocked[0]["Message"]
    # And that message's undo command finds the block
    undone = blocks.unblock(event_id=events[winner]["id"], actor="oncall")
    assert [b.ip for b in undone.changed] == [X]
    assert ip_set_addresses(waf, 4) == []


def test_an_unblock_between_a_claims_read_and_write_is_not_overwritten(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch, runner: _Runner
) -> None:
    """A responder that read the registry before an operator's unblock wrote a live
    block over the release: the address the operator had just let through was blocked
    again on the evidence the operator cleared, and the release was lost."""
    put_waf_records({"203.0.113.7": 12})
    put_failed_sign_ins({"203.0.113.7": 5})
    # Given the blocked-requests responder held after its registry read
    read = threading.Event()
    go = threading.Event()
    runner.gates.append(go)

    def hold() -> None:
        if threading.current_thread().name == "late":
            read.set()
            assert go.wait(30)

    _hold_first_decide(monkeypatch, hold)
    runner.start("late", lambda: invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED)))
    assert read.wait(30)
    # And meanwhile the sign-in alarm blocks the address and on-call unblocks it
    first = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))
    assert first["blocked"] == [X]
    assert [b.ip for b in blocks.unblock([X], actor="oncall").changed] == [X]

    # When the held responder goes on
    go.set()
    runner.join()

    # Then the release holds: not blocked, not in the IP set, not announced as blocked
    late = runner.results["late"]
    assert late["blocked_count"] == 0
    assert "unblocked by an operator" in late["skipped"][0]["why"]
    (row,) = blocks.list_blocks(include_expired=True)
    assert (row.released_by, row.offences) == ("oncall", 0)
    assert blocks.list_blocks() == []
    assert ip_set_addresses(waf, 4) == []
    # And only the first alarm's message named it as blocked
    messages = [m["Message"] for m in oncall_messages(waf)]
    assert len(messages) == 2
    assert [m for m in messages if "Blocked 1 address" in m] == [first["message"]]


def test_a_sweep_planned_before_a_re_block_does_not_remove_it(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch, runner: _Runner
) -> None:
    """The sweep read the registry while the address's old block had expired; the
    responder then blocked it again, found the IP set already holding it and wrote
    nothing, so the lock token did not move and the sweep's stale list (without the
    address) was accepted: registry live, IP set empty, until the next sweep."""
    # Given an expired block still in the IP set (the sweep has not run yet)
    past = int(time.time()) - 3600
    old = blocks.Block(
        ipaddress.ip_network(X),
        "earlier",
        names.ALARM_WAF_BLOCKED,
        "auto",
        past - 600,
        past - 600,
        past,
        event_id="earlier-event",
    )
    blocks.registry().put_many([old], memory_seconds=86400)
    set_ip_set(waf, 4, [X])
    # And the sweep held after its registry read, before its IP set write
    read, go = hold_sweep_after_registry_read(monkeypatch)
    runner.gates.append(go)
    runner.start("sweep", lambda: invoke(scheduled_sweep_event()))
    assert read.wait(30)

    # When the address offends again and is blocked while the sweep is held
    put_waf_records({"203.0.113.7": 12})
    again = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert again["blocked"] == [X]
    go.set()
    runner.join()

    # Then the IP set still holds it, as the registry does
    assert [b.ip for b in blocks.list_blocks()] == [X]
    assert ip_set_addresses(waf, 4) == [X]


def test_a_retried_event_after_a_failed_message_tells_oncall_once_and_a_rival_nothing(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Halfway failure the other way round: registry and IP set written, the message
    not sent. A second alarm for the same address in between sees the block (not a
    new one to announce); the redelivered event announces it, once."""
    put_waf_records({"203.0.113.7": 12})
    put_failed_sign_ins({"203.0.113.7": 5})
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    real_publish = notify.publish

    def sns_down(notification: notify.Notification) -> str | None:
        raise ConnectionError("SNS went away")

    monkeypatch.setattr(respond, "publish", sns_down)
    with pytest.raises(ConnectionError):
        invoke(event)
    assert registry_ips() == [X]
    assert ip_set_addresses(waf, 4) == [X]
    monkeypatch.setattr(respond, "publish", real_publish)

    rival = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))
    retried = invoke(event)

    assert rival["blocked_count"] == 0
    assert retried["blocked"] == [X]
    messages = [m["Message"] for m in oncall_messages(waf)]
    assert sum("Blocked 1 address" in m for m in messages) == 1
    assert _row(X)["event_id"]["S"] == event["id"]


def _legacy_row(ip: str, *, blocked_until: int) -> dict[str, Any]:
    """A registry row as written before rows carried a write id."""
    now = int(time.time())
    return raw_registry_item(
        ip,
        version=4,
        reason="earlier",
        alarm=names.ALARM_WAF_BLOCKED,
        source="auto",
        seen=now - 7200,
        blocked_until=blocked_until,
        offences=1,
        requests=9,
        expires_at=now + 86400,
        event_id={"S": "earlier-event"},
    )


def test_a_row_written_before_write_ids_is_claimed_once_and_then_guarded(
    waf: WafResources,
) -> None:
    """Rows already in the registry at deploy time carry no write id: a claim on one
    read that way succeeds while it is untouched, and is refused once any writer has
    rewritten it since the read."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    expired = int(time.time()) - 60
    dynamodb.put_item(
        TableName=names.BLOCK_REGISTRY_TABLE, Item=_legacy_row(X, blocked_until=expired)
    )
    reg = blocks.registry()
    read = blocks.rows_by_ip(reg.all())
    assert read[X].write_id is None
    again = blocks.Block(
        ipaddress.ip_network(X),
        "again",
        names.ALARM_WAF_BLOCKED,
        "auto",
        read[X].first_seen,
        int(time.time()),
        int(time.time()) + 3600,
        offences=2,
    )

    # An untouched row: claimed
    assert reg.claim([again], read, memory_seconds=86400) == []
    assert _row(X)["offences"]["N"] == "2"
    # The same stale read again, after that write: refused, the row left as written
    refused = blocks.Block(
        ipaddress.ip_network(X),
        "stale",
        names.ALARM_FAILED_SIGNINS,
        "auto",
        read[X].first_seen,
        int(time.time()),
        int(time.time()) + 60,
        offences=2,
    )
    assert reg.claim([refused], read, memory_seconds=86400) == [X]
    assert _row(X)["reason"]["S"] == "again"
    # A fresh read names the new write id, and a claim on it goes through
    fresh = blocks.rows_by_ip(reg.all())
    assert fresh[X].write_id is not None
    assert reg.claim([refused], fresh, memory_seconds=86400) == []
    assert _row(X)["reason"]["S"] == "stale"


def _responder_writes_first(monkeypatch: pytest.MonkeyPatch, row: blocks.Block) -> list[int]:
    """The operator's change, held after its registry read: a responder's row lands
    before the operator's write (the first claim), as two writers interleave."""
    real_claim = blocks.BlockRegistry.claim
    claims: list[int] = []

    def claim(self: blocks.BlockRegistry, *args: Any, **kwargs: Any) -> list[str]:
        if not claims:
            self.put_many([row], memory_seconds=86400)
        claims.append(1)
        return real_claim(self, *args, **kwargs)

    monkeypatch.setattr(blocks.BlockRegistry, "claim", claim)
    return claims


def test_an_operator_block_after_a_responders_write_keeps_its_offence_history(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's block wrote its row whatever had happened since its read: a
    responder's block of the address written in between (a third offence, first seen
    an hour ago) was replaced by a first offence seen now, so the next alarm treated a
    repeat offender as new."""
    first_seen = int(time.time()) - 3600
    claims = _responder_writes_first(
        monkeypatch, responders_block(X, event_id="evt-1", offences=3, first_seen=first_seen)
    )

    result = blocks.block([X], reason="on-call: scanner", duration_seconds=3600, actor="oncall")

    assert len(claims) == 2  # refused once (the row changed), then decided again
    (row,) = result.changed
    assert (row.source, row.offences, row.first_seen, row.requests) == (
        "manual",
        3,
        first_seen,
        120,
    )
    assert _row(X)["offences"]["N"] == "3"
    assert ip_set_addresses(waf, 4) == [X]


def test_an_unblock_after_a_responders_re_block_releases_the_block_it_did_not_read(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator read one block and a responder wrote another before the release:
    the release is decided again on the new row, and says which block it lifted."""
    blocks.block([X], reason="earlier", duration_seconds=600, actor="oncall")
    _responder_writes_first(
        monkeypatch, responders_block(X, event_id="evt-2", offences=2, first_seen=int(time.time()))
    )

    result = blocks.unblock([X], actor="oncall")

    (lifted,) = result.changed
    assert lifted.event_id == "evt-2"
    row = _row(X)
    assert "released_at" in row
    assert row["event_id"]["S"] == "evt-2"
    assert ip_set_addresses(waf, 4) == []


def test_the_responders_role_may_make_the_conditional_registry_writes() -> None:
    """The claim is a PutItem on the registry table. The role's DynamoDB grants are per
    table (cdk/detection.py::TABLE_ACTIONS), and the function-permissions test cannot
    tell tables apart in the code's calls (the responder also puts idempotency
    records), so it would pass a role that AWS refuses every claim for."""
    from cdk.detection import TABLE_ACTIONS

    assert "dynamodb:PutItem" in TABLE_ACTIONS["waf_responder"][names.BLOCK_REGISTRY_TABLE]
