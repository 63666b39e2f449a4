"""An operator's block or unblock whose registry writes land but whose answers are lost.

DynamoDB applies the conditional PutItem, and every answer to it is lost on the way
back, botocore's retries included (they meet the row the first attempt wrote, are
refused, and that answer is lost too). The change is in the registry, so the sweep
enforces it: on-call must be told it was made (and it must be audited), not that it
failed. Whatever the answers, the registry says what landed: each row carries the
write id it was put with.

Against the moto server, behind the fault proxy of tests/support/aws_faults.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from functions.shared import blocks, names
from ops.cli import main
from tests.support.aws_faults import DROP_ANSWER, FAIL, PASS, AwsFaults, faulty_aws_endpoint
from tests.support.waf import WafResources, clear_caches, ip_set_addresses, responders_block

A = "203.0.113.7/32"
B = "203.0.113.8/32"

Rule = Callable[[str, bytes], str]


def _registry_put(target: str, body: bytes, address: str | None = None) -> bool:
    """A PutItem on the block registry (of `address`, if given)."""
    return (
        target.endswith(".PutItem")
        and names.BLOCK_REGISTRY_TABLE.encode() in body
        and (address is None or address.encode() in body)
    )


def _every_answer_lost(address: str | None = None) -> Rule:
    """Every registry PutItem (of `address`) is applied and its answer lost."""

    def rule(target: str, body: bytes) -> str:
        return DROP_ANSWER if _registry_put(target, body, address) else PASS

    return rule


@contextmanager
def _lossy_registry(monkeypatch: pytest.MonkeyPatch, rule: Rule) -> Iterator[AwsFaults]:
    with faulty_aws_endpoint(monkeypatch) as faults:
        clear_caches()
        faults.rule = rule
        yield faults
        faults.rule = lambda target, body: PASS


def _audit_lines(stderr: str) -> list[dict[str, str]]:
    return [json.loads(line)["audit"] for line in stderr.splitlines() if '"audit"' in line]


def _said(out: str, err: str) -> str:
    """What on-call reads: stdout and the error line, not the JSON log lines."""
    return out + "".join(line for line in err.splitlines(True) if not line.startswith("{"))


def _registry_row(ip: str) -> blocks.Block | None:
    return blocks.rows_by_ip(blocks.registry().all()).get(ip)


# --- The change landed: made, audited, enforced ---------------------------------------


def test_a_block_whose_every_registry_answer_is_lost_is_reported_made(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`babyshield waf block A`: the put lands, every answer to it is lost. The registry
    holds the operator's live block of A, which the next sweep puts in the IP set; on-call
    was told "AWS call failed" and nothing was audited, so believed A not blocked."""
    with _lossy_registry(monkeypatch, _every_answer_lost()) as faults:
        code = main(["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "oncall"])
        assert faults.disturbed(DROP_ANSWER), "the proxy lost no registry answer"
        out, err = capsys.readouterr()
        row = _registry_row(A)
        ip_set_after_command = ip_set_addresses(waf, 4)

    # What the registry holds: the operator's live block, which the sweep enforces.
    assert row is not None
    assert (row.actor, row.is_live(row.last_seen)) == ("oncall", True)
    # What on-call is told: it was made, synced as usual, and it is audited.
    assert code == 0, f"a block the registry holds reported failed:\n{_said(out, err)}"
    assert "blocked 203.0.113.7 until" in out
    assert [(a["action"], a["by"], a["ip"]) for a in _audit_lines(err)] == [("block", "oncall", A)]
    assert ip_set_after_command == [A]


def test_an_unblock_whose_every_registry_answer_is_lost_is_reported_made(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`babyshield waf unblock A`: the release lands, every answer to it is lost. The
    registry holds A released and the sweep takes A out of the IP set; on-call was told
    it failed, so believed A still blocked."""
    blocks.registry().put_many([responders_block(A)], memory_seconds=86400)
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == [A]

    with _lossy_registry(monkeypatch, _every_answer_lost()) as faults:
        code = main(["waf", "unblock", "203.0.113.7", "--by", "oncall"])
        assert faults.disturbed(DROP_ANSWER), "the proxy lost no registry answer"
        out, err = capsys.readouterr()
        row = _registry_row(A)
        ip_set_after_command = ip_set_addresses(waf, 4)

    assert row is not None
    assert row.released_by == "oncall"
    assert code == 0, f"an unblock the registry holds reported failed:\n{_said(out, err)}"
    assert "unblocked 203.0.113.7" in out
    assert [(a["action"], a["by"], a["ip"]) for a in _audit_lines(err)] == [
        ("unblock", "oncall", A)
    ]
    assert ip_set_after_command == []


def test_a_two_address_block_with_one_rows_answers_lost_is_reported_whole(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`babyshield waf block A B`: both puts land, every answer to A's is lost. Both are
    blocked in the registry; on-call was told "1 of 2 writes took effect: B", and only B
    was audited."""
    with _lossy_registry(monkeypatch, _every_answer_lost("203.0.113.7")) as faults:
        code = main(
            ["waf", "block", "203.0.113.7", "203.0.113.8", "--reason", "scanner", "--by", "oncall"]
        )
        assert faults.disturbed(DROP_ANSWER), "the proxy lost no registry answer"
        out, err = capsys.readouterr()
        held = [ip for ip in (A, B) if (row := _registry_row(ip)) and row.actor == "oncall"]
        ip_set_after_command = ip_set_addresses(waf, 4)

    assert held == [A, B]
    assert code == 0, f"a block the registry holds reported failed:\n{_said(out, err)}"
    assert sorted(a["ip"] for a in _audit_lines(err)) == [A, B]
    assert ip_set_after_command == [A, B]


# --- The change did not land: failed, nothing half-done ---------------------------------


def test_a_block_whose_write_never_lands_is_reported_failed_and_unaudited(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every put fails before DynamoDB applies it (a 500 the proxy answers itself). The
    read-back finds no row of this change: the command fails, as before, with nothing
    audited and nothing in the registry or the IP set."""

    def rule(target: str, body: bytes) -> str:
        return FAIL if _registry_put(target, body) else PASS

    with _lossy_registry(monkeypatch, rule) as faults:
        code = main(["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "oncall"])
        assert faults.disturbed(FAIL), "the proxy failed no registry write"
        out, err = capsys.readouterr()
        row = _registry_row(A)
        ip_set_after_command = ip_set_addresses(waf, 4)

    assert code == 1
    assert "unknown" not in _said(out, err)
    assert _audit_lines(err) == []
    assert row is None
    assert ip_set_after_command == []


# --- The read-back fails too: the outcome is unknown, and said so -----------------------


def test_a_block_whose_answers_and_read_back_are_lost_says_the_outcome_is_unknown(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The put lands and its answers are lost; so is every registry read after it. The
    command cannot know whether A is blocked: it must say so, naming A and `waf list`,
    not that the block failed (the sweep may well enforce it)."""
    put_seen: list[bool] = []
    reads_fail = [True]

    def rule(target: str, body: bytes) -> str:
        if _registry_put(target, body):
            put_seen.append(True)
            return DROP_ANSWER
        if put_seen and reads_fail[0] and target.endswith(".Scan"):
            return FAIL
        return PASS

    with _lossy_registry(monkeypatch, rule) as faults:
        code = main(["waf", "block", "203.0.113.7", "--reason", "scanner", "--by", "oncall"])
        assert faults.disturbed(DROP_ANSWER), "the proxy lost no registry answer"
        out, err = capsys.readouterr()
        reads_fail[0] = False
        row = _registry_row(A)

    said = _said(out, err)
    assert row is not None  # it did land
    assert row.actor == "oncall"
    assert code == 1
    assert "unknown" in said, f"an outcome nobody knows reported as a failure:\n{said}"
    assert "203.0.113.7" in said, f"the address is not named:\n{said}"
    assert "babyshield waf list" in said, f"not told how to check:\n{said}"
    assert "failed" not in said.split("unknown")[0], f"called a failure first:\n{said}"
    assert faults.disturbed(FAIL), "no registry read after the write was failed"
    # Nothing was audited: nobody knows whether it took effect.
    assert _audit_lines(err) == []
