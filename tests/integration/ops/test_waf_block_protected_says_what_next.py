"""`babyshield waf block` refusing a protected address or range ends, as every refusal
does (RUNBOOK: "a line saying what to do next"), with what to do instead. A range that
only overlaps the never-block list is refused too, so the hint says "touching"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.cli import main
from tests.support.waf import WafResources, clear_caches, create_resources, ip_set_addresses


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    monkeypatch.setenv("NEVER_BLOCK_CIDRS", "198.51.100.0/28")
    yield create_resources(monkeypatch)
    clear_caches()


@pytest.mark.parametrize("target", ["198.51.100.7", "198.51.100.0/24"])
def test_a_refused_protected_target_says_what_to_do(
    waf: WafResources, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    # When on-call blocks an address on the list, or a range overlapping it
    code = main(["waf", "block", target, "--reason", "scan", "--by", "bob"])
    # Then nothing is blocked, and the refusal names the way on
    err = capsys.readouterr().err
    assert code == 1
    if target == "198.51.100.7":
        assert "198.51.100.7 is on the never-block list; it is never blocked" in err
    else:
        # A range that only overlaps the list: what it touches, and what may be blocked.
        assert (
            "198.51.100.0/24 overlaps the never-block list (198.51.100.0/28); a range "
            "touching a protected address is never blocked: block the parts outside it "
            "(198.51.100.16/28, 198.51.100.32/27, 198.51.100.64/26, 198.51.100.128/25)"
        ) in " ".join(err.split())
    assert "next: an address or range touching the admin allowlist or the never-block" in err
    assert "/babyshield/never-block-cidrs" in err
    assert ip_set_addresses(waf, 4) == []
