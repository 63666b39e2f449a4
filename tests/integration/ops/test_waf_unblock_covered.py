"""`babyshield waf unblock` of several addresses: a partial success must not exit 0
while an address on-call asked to let through is still refused at the WAF."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ops.cli import main
from tests.support.waf import WafResources, clear_caches, create_resources, ip_set_addresses


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    yield create_resources(monkeypatch)
    clear_caches()


def test_one_address_lifted_another_still_covered_fails_the_command(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an address blocked by itself, and a blocked /24
    assert main(["waf", "block", "203.0.113.7", "--reason", "brute force"]) == 0
    assert main(["waf", "block", "198.51.100.0/24", "--reason", "scanner farm"]) == 0
    capsys.readouterr()

    # When on-call unblocks that address and a customer inside the /24 in one call
    code = main(["waf", "unblock", "203.0.113.7", "198.51.100.5"])

    # Then the first is lifted, but the command fails: the customer is still refused
    captured = capsys.readouterr()
    assert "unblocked 203.0.113.7" in captured.out
    assert code == 1
    assert "error: 198.51.100.5 still refused at the WAF by a wider block" in captured.err
    assert "next: babyshield waf unblock 198.51.100.0/24" in captured.err
    assert ip_set_addresses(waf, 4) == ["198.51.100.0/24"]


def test_the_same_partial_unblock_fails_in_json_too(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["waf", "block", "203.0.113.7", "--reason", "brute force"]) == 0
    assert main(["waf", "block", "198.51.100.0/24", "--reason", "scanner farm"]) == 0
    capsys.readouterr()
    assert main(["waf", "unblock", "203.0.113.7", "198.51.100.5", "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert [b["ip"] for b in answer["unblocked"]] == ["203.0.113.7/32"]
    assert answer["covered_by"] == {"198.51.100.5/32": ["198.51.100.0/24"]}


def test_a_target_that_was_simply_not_blocked_keeps_exit_zero(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not blocked and not covered: it already passes the WAF, as asked."""
    assert main(["waf", "block", "203.0.113.7", "--reason", "brute force"]) == 0
    capsys.readouterr()
    assert main(["waf", "unblock", "203.0.113.7", "192.0.2.1"]) == 0
    assert "not blocked: 192.0.2.1\n" in capsys.readouterr().out
    assert ip_set_addresses(waf, 4) == []
