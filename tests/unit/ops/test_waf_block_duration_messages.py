"""`babyshield waf block --for`: a duration that is negative, zero or malformed is refused
with one line saying what is wrong and which forms are accepted; exit 2, no AWS call."""

from __future__ import annotations

import pytest

from ops.cli import main
from ops.waf import parse_duration

ACCEPTED = "--for must be a positive duration such as 30m, 2h or 1d"


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["waf", "block", "203.0.113.7", "--reason", "scan", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        # Separate from --for, a leading '-' reads as an option to argparse.
        (["--for", "-5m"], "'-5m' is negative"),
        (["--for", "-5"], "'-5' is negative"),
        (["--for=-5m"], "'-5m' is negative"),
        (["--for", "0"], "'0' is zero"),
        (["--for", "0m"], "'0m' is zero"),
        (["--for", "5x"], "'5x' is not a duration"),
        (["--for", "forever"], "'forever' is not a duration"),
        (["--for", "1.5h"], "'1.5h' is not a duration"),
    ],
)
def test_a_duration_that_is_not_positive_says_what_is_wrong_and_what_is_accepted(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refusal(argv, capsys)
    assert line.startswith(f"babyshield waf block: error: {ACCEPTED}")
    assert line.endswith(why)
    assert "expected one argument" not in line


def test_a_missing_duration_names_the_accepted_forms(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refusal(["--for"], capsys)
    assert line == (
        f"babyshield waf block: error: {ACCEPTED} "
        "(a whole number with s, m, h or d, or plain seconds): none given"
    )


@pytest.mark.parametrize(
    ("text", "why"), [("30s", "'30s' is under 1 minute"), ("31d", "'31d' is over 30 days")]
)
def test_a_duration_out_of_range_says_the_range(
    text: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refusal(["--for", text], capsys)
    assert line == f"babyshield waf block: error: --for must be from 1 minute to 30 days: {why}"


def test_a_hostile_duration_is_shown_escaped_and_short(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refusal(["--for", "\x1b[2J" + "9" * 10_000], capsys)
    assert "\x1b" not in line
    assert len(line) < 300


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5400),
        ("4h", 14400),
        ("2d", 172800),
        ("600", 600),
        ("600s", 600),
        ("1m", 60),
        ("30d", 30 * 86400),
        ("4H", 14400),
        (" 4h ", 14400),
    ],
)
def test_the_forms_accepted_before_are_still_accepted(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_a_duration_too_long_for_int_is_refused_like_any_other(
    capsys: pytest.CaptureFixture[str],
):
    """parse_duration cuts what it echoes to 40 characters and names the accepted
    forms; past 4,300 digits int() raises ValueError instead, and argparse answers
    `--for invalid parse_duration value: '999…'` with all the digits echoed."""
    from ops.waf import DURATION_FORMS, build_parser

    digits = "9" * 5000
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["waf", "block", "203.0.113.7", "--reason", "x", "--for", f"{digits}m"]
        )
    err = capsys.readouterr().err
    assert "invalid parse_duration value" not in err
    assert "over 30 days" in err or DURATION_FORMS in err
    assert digits not in err
