"""A hand block of one IPv6 address blocks that address (/128), as asked; the alarm's
responder blocks an IPv6 offender's whole /64, because IPv6 clients move within it.
The command says which it did, and names the network that blocks the rest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.cli import main
from tests.support.waf import WafResources, clear_caches, create_resources, ip_set_addresses


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    yield create_resources(monkeypatch)
    clear_caches()


def _block(capsys: pytest.CaptureFixture[str], *targets: str) -> str:
    assert main(["waf", "block", *targets, "--reason", "credential stuffing"]) == 0
    return capsys.readouterr().out


def test_one_ipv6_address_is_blocked_alone_and_the_answer_names_its_network(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    # When on-call blocks one IPv6 address
    out = _block(capsys, "2001:db8:1:2:a:b:c:d")

    # Then that address alone is blocked, and the answer says so and names its /64
    assert ip_set_addresses(waf, 6) == ["2001:db8:1:2:a:b:c:d/128"]
    lines = out.splitlines()
    assert lines[0].startswith("blocked 2001:db8:1:2:a:b:c:d until ")
    assert lines[1] == (
        "  only this address: an IPv6 client can move to others in its /64, which the "
        "responder blocks whole; block 2001:db8:1:2::/64 to block that network"
    )
    assert lines[2] == "undo: babyshield waf unblock 2001:db8:1:2:a:b:c:d"

    # And the network it names is accepted as it is printed
    out = _block(capsys, "2001:db8:1:2::/64")
    assert "blocked 2001:db8:1:2::/64 until" in out
    assert "only this address" not in out
    assert ip_set_addresses(waf, 6) == ["2001:db8:1:2::/64"]


def test_the_note_follows_the_responders_prefix(
    waf: WafResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPV6_OFFENDER_PREFIX", "56")
    out = _block(capsys, "2001:db8:1:2::7")
    assert "in its /56, which the responder blocks whole; block 2001:db8:1::/56" in out


@pytest.mark.parametrize(
    "target",
    ["203.0.113.7", "::ffff:203.0.113.7", "2001:db8:1:2::/64", "2001:db8:1:2::/80"],
    ids=["ipv4", "ipv4-mapped", "the /64", "a network"],
)
def test_no_note_for_anything_but_one_ipv6_address(
    target: str, waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "only this address" not in _block(capsys, target)


def test_json_is_unchanged(waf: WafResources, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    answer = json.loads(_block(capsys, "2001:db8::7", "--json"))
    assert [b["ip"] for b in answer["blocked"]] == ["2001:db8::7/128"]
