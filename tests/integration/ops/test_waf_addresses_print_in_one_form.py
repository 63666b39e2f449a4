"""Every address `babyshield waf` prints (block, list, unblock, the alarm's on-call
message) is in one form: a single address bare (`203.0.113.7`, `2001:db8::7`), a
network as CIDR. What is printed is accepted back by `unblock`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import pytest

from functions.shared import blocks
from ops.cli import main
from tests.support.waf import WafResources, clear_caches, create_resources, put_waf_records

# Any IPv4 or IPv6 address, with its prefix if it has one.
_ADDRESS = re.compile(
    r"(?<![\w:.])("
    r"(?:\d{1,3}\.){3}\d{1,3}(?:/\d+)?"
    r"|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:/\d+)?"
    r")(?![\w:.])"
)


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    import ops.local_state

    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "5")
    resources = create_resources(monkeypatch)
    # The moto server stands in for the running stack `local alarm` insists on.
    monkeypatch.setattr(ops.local_state, "apply_local_environment", lambda **_: True)
    yield resources
    clear_caches()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    # stderr carries the audit trail (JSON) as well: only the error lines are output.
    errors = "\n".join(line for line in captured.err.splitlines() if not line.startswith("{"))
    return code, captured.out + errors


def _addresses(text: str) -> set[str]:
    found = set()
    for candidate in _ADDRESS.findall(text):
        try:
            ipaddress.ip_network(candidate)
        except ValueError:
            continue  # a time of day, a version string
        found.add(candidate)
    return found


def _one_form(address: str) -> None:
    network = ipaddress.ip_network(address)
    assert "/" in address or network.prefixlen == network.max_prefixlen
    assert network.prefixlen < network.max_prefixlen or "/" not in address, (
        f"{address} is a single address shown with its prefix"
    )
    # And unblock takes it back as the same network
    assert blocks.parse_target(address) == network


def test_every_address_the_command_prints_is_bare_or_a_network_and_unblock_takes_it(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    # Given blocks of an IPv4 address, an IPv6 address, a network and an address in it
    code, out = _run(
        [
            "waf",
            "block",
            "203.0.113.7",
            "2001:db8::7",
            "198.51.100.0/24",
            "198.51.100.6",
            "--reason",
            "scan",
        ],
        capsys,
    )
    assert code == 0
    outputs.append(out)
    assert "blocked 2001:db8::7 until" in out
    # And a block made by an alarm
    put_waf_records({"192.0.2.44": 9})
    code, out = _run(["local", "alarm", "waf-blocked-requests"], capsys)
    assert code == 0
    assert "babyshield waf unblock 192.0.2.44" in out
    outputs.append(out)

    # When on-call lists, and unblocks what is covered, what is not blocked, and by event
    for argv in (
        ["waf", "list"],
        ["waf", "list", "--all"],
        ["waf", "unblock", "198.51.100.5"],
        ["waf", "unblock", "198.51.100.6"],
        ["waf", "unblock", "192.0.2.1", "2001:db8::99"],
    ):
        _code, out = _run(argv, capsys)
        outputs.append(out)

    # Then no output shows a single address as /32 or /128
    text = "\n".join(outputs)
    assert "/32" not in text
    assert "/128" not in text
    assert "not blocked by itself: 198.51.100.5 is inside the blocked 198.51.100.0/24" in text
    assert "warning: 198.51.100.6 is still refused at the WAF" in text
    assert "error: 198.51.100.6 still refused at the WAF by a wider block" in text
    assert "not blocked: 192.0.2.1\n" in text
    assert "not blocked: 2001:db8::99\n" in text
    printed = _addresses(text)
    assert {"203.0.113.7", "2001:db8::7", "198.51.100.0/24", "192.0.2.44"} <= printed
    for address in printed:
        _one_form(address)


def test_what_block_and_list_print_unblocks_the_same_block(
    waf: WafResources, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(["waf", "block", "2001:db8::7", "203.0.113.7", "--reason", "scan"], capsys)
    assert code == 0
    (undo,) = [line for line in out.splitlines() if line.startswith("undo: ")]
    assert undo == "undo: babyshield waf unblock 2001:db8::7 203.0.113.7"

    code, table = _run(["waf", "list"], capsys)
    listed = [row.split()[0] for row in table.splitlines()[2:]]
    assert sorted(listed) == ["2001:db8::7", "203.0.113.7"]

    # The undo line, run as printed, unblocks both
    code, out = _run(undo.removeprefix("undo: babyshield ").split(), capsys)
    assert code == 0
    assert sorted(re.findall(r"^unblocked (\S+)", out, re.MULTILINE)) == listed
    code, out = _run(["waf", "list"], capsys)
    assert out.strip() == "no live blocks"
