"""`babyshield waf unblock --event ID` when no live block carries that event: the
command says so and where event ids are listed, and exits 1 as for an address that
is not blocked."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from functions.shared import names
from functions.waf_responder.events import alarm_state_change_event
from ops.apigw import LocalLambdaContext
from ops.cli import main
from tests.support.waf import WafResources, clear_caches, create_resources, put_waf_records

LIST_EVENTS = "babyshield waf list --all --json shows each block's event_id"


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "5")
    yield create_resources(monkeypatch)
    clear_caches()


def _alarm_event_id() -> str:
    from functions.waf_responder.handler import lambda_handler

    put_waf_records({"203.0.113.1": 9})
    result = lambda_handler(alarm_state_change_event(names.ALARM_WAF_BLOCKED), LocalLambdaContext())
    return str(result["event_id"])


def test_an_event_no_block_carries_says_so_and_where_event_ids_are(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a live block from an alarm, and an event id that is not its
    _alarm_event_id()
    capsys.readouterr()

    # When on-call unblocks by an event id with a typo
    code = main(["waf", "unblock", "--event", "evt-typo", "--by", "bob"])

    # Then the answer says why nothing happened, and how to find the right id
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == "not blocked: no block carries event evt-typo\n"
    assert "error: nothing was unblocked" in captured.err
    assert f"next: {LIST_EVENTS}" in captured.err
    assert "Traceback" not in captured.err
    # And the alarm's block stands
    assert main(["waf", "list", "--json"]) == 0
    assert [b["ip"] for b in json.loads(capsys.readouterr().out)] == ["203.0.113.1/32"]


def test_json_names_the_event_nothing_matched(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["waf", "unblock", "--event", "evt-typo", "--json"]) == 1
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["event_not_blocked"] == "evt-typo"
    assert answer["unblocked"] == []
    assert "nothing was unblocked" in captured.err


def test_an_event_unblocked_already_says_so(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """The on-call message's undo command run a second time (or by a second person)."""
    event_id = _alarm_event_id()
    assert main(["waf", "unblock", "--event", event_id, "--by", "alice"]) == 0
    capsys.readouterr()

    code = main(["waf", "unblock", "--event", event_id, "--by", "bob"])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == (
        f"not blocked: every block of event {event_id} is unblocked already (by alice)\n"
    )
    assert "error: nothing was unblocked" in captured.err
    assert "next: babyshield waf list --all shows them as released" in captured.err


def test_an_unmatched_event_next_to_an_unblocked_address_is_named_and_exits_zero(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for an address that was not blocked: what was asked for passes the WAF."""
    assert main(["waf", "block", "198.51.100.5", "--reason", "scan"]) == 0
    capsys.readouterr()

    assert main(["waf", "unblock", "198.51.100.5", "--event", "evt-typo"]) == 0

    out = capsys.readouterr().out
    assert "unblocked 198.51.100.5" in out
    assert "not blocked: no block carries event evt-typo" in out


def test_an_event_that_matches_still_unblocks_without_a_notice(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    event_id = _alarm_event_id()
    capsys.readouterr()
    assert main(["waf", "unblock", "--event", event_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith("unblocked 203.0.113.1 (was: ")
    assert "not blocked" not in out
