"""`babyshield waf` errors: a clear line, a non-zero exit, never a traceback, no AWS call."""

from __future__ import annotations

import socket

import pytest

from ops.cli import main
from ops.waf import parse_duration


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["waf", "block", "203.0.113", "--reason", "scan"],
            "not an IP address or CIDR: '203.0.113'",
        ),
        (["waf", "block", "10.0.0.0/8", "--reason", "scan"], "wider than /16"),
        (["waf", "unblock", "2001:db8::zz"], "not an IP address or CIDR"),
        (["waf", "block", "fe80::1%eth0", "--reason", "scan"], "IPv6 zone id"),
        (["waf", "unblock", "fe80::1%eth0"], "IPv6 zone id"),
        (["waf", "block", "203.0.113.7", "--reason", "a\nb"], "control characters"),
        (["waf", "block", "203.0.113.7", "--reason", "\x1b[2Jx"], "control characters"),
        (["waf", "block", "203.0.113.7", "--reason", "x" * 100_000], "at most 500"),
        (["waf", "unblock"], "name the addresses to unblock"),
    ],
)
def test_bad_addresses_and_reasons_fail_before_any_aws_call(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Protects on-call from a typo: the message says what is wrong, exit 2 (nothing was
    tried), no traceback. The endpoint points nowhere, so reaching AWS would fail
    differently."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("argv", [["waf", "list"], ["waf", "unblock", "203.0.113.7"]])
def test_unreachable_endpoint_is_a_clear_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects the 3 a.m. experience: no stack running means one line saying so and
    what to do, not a botocore traceback."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach AWS at {endpoint}" in err
    assert "next:" in err
    assert "Traceback" not in err


def test_bad_duration_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["waf", "block", "203.0.113.7", "--reason", "x", "--for", "forever"])
    assert exit_info.value.code == 2
    assert "not a duration" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("4h", 14400), ("2d", 172800), ("600", 600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("action", ["block", "unblock"])
@pytest.mark.parametrize("actor", ["", "  ", "bob\x1b[2J"])
def test_a_blank_or_unprintable_actor_is_refused(action: str, actor: str, capsys) -> None:
    """`--by "$USER"` in a shell without USER passes an empty name: the audit line
    would record nobody."""
    from ops.waf import build_parser

    reason = ["--reason", "scanner"] if action == "block" else []
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["waf", action, "203.0.113.7", *reason, "--by", actor])
    assert refused.value.code == 2
    assert "name who is acting" in capsys.readouterr().err
