"""`babyshield local` refuses bad input before it starts anything: one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.cli import main


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Away from a `make run` of this checkout; starting the stack fails the test."""
    import ops.local_stack

    def local_stack(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the stack was started")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ops.local_stack, "local_stack", local_stack)


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_a_bad_port_is_refused_before_anything_starts(
    port: str, nothing_starts: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects start-up: `--port -1` failed with OverflowError after moto, PostgreSQL
    and the migrations had all been set up."""
    with pytest.raises(SystemExit) as exit_info:
        main(["local", "--port", port])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err
    assert "Traceback" not in err


def test_a_bad_admin_allowlist_is_one_line_naming_the_variable(
    nothing_starts: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "127.0.0.1,10.0.0.1/8")
    code = main(["local", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ADMIN_ALLOWED_CIDRS is not a list of CIDRs")
    assert "10.0.0.1/8" in err
    assert "next:" in err
    assert "validation error" not in err


def test_an_unknown_alarm_is_refused_with_the_known_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Protects on-call from a JSON warning and a bare "rejected": say what exists."""
    with pytest.raises(SystemExit) as exit_info:
        main(["local", "alarm", "waf-blocked"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown alarm 'waf-blocked'" in err
    for name in ("waf-blocked-requests", "failed-sign-ins", "waf-rate-limited"):
        assert name in err


def test_alarm_help_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["local", "alarm", "--help"])
    out = capsys.readouterr().out
    for name in ("waf-blocked-requests", "failed-sign-ins", "waf-rate-limited"):
        assert name in out


@pytest.mark.parametrize("name", ["waf-rate-limited", "babyshield-waf-rate-limited"])
def test_the_rate_alarm_says_why_it_cannot_run_locally(
    name: str, nothing_starts: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects on-call from a traceback: the local stack has no WebACL whose rate rule
    the responder could ask, so the alarm is refused up front, with what to use instead."""
    code = main(["local", "alarm", name])
    err = capsys.readouterr().err
    assert code == 2  # refused before anything ran
    assert "cannot be simulated on the local stack" in err
    assert "no WebACL" in err
    assert "next: babyshield local alarm waf-blocked-requests" in err
    assert "Traceback" not in err
    assert "unexpected failure" not in err


@pytest.mark.parametrize(
    ("database", "kept"),
    [
        ("127.0.0.1:5432", "Kept: the database babyshield_local on 127.0.0.1:5432"),
        ("DATABASE_URL", "Kept: the database DATABASE_URL names"),
        ("an embedded PostgreSQL (scram-sha-256)", "Gone too: the embedded PostgreSQL"),
    ],
)
def test_stopping_says_what_is_gone_and_what_is_kept(database: str, kept: str):
    """Ctrl-C printed "stopping the local stack" and nothing more: a restart then found
    the recalls it had sent but none of its blocks, with nothing to say why."""
    from ops.local import farewell

    text = farewell({"database": database})
    assert "Gone: the moto server" in text
    assert kept in text
    if "Kept" in kept:
        assert "blocks and secrets start afresh" in text
