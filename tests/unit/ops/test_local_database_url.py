"""`babyshield local` with a DATABASE_URL it cannot use: one clear line that never
repeats the password, and nothing left behind (port, state file)."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.cli import main
from ops.local_state import STATE_FILE

PASSWORD = "hunter2secret"  # pragma: allowlist secret


@pytest.fixture(autouse=True)
def _away_from_a_running_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    # `babyshield local` installs its SIGTERM handler; the test process keeps its own.
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        # An unencoded `@` in the password: libpq takes the rest as the host and would
        # print "failed to resolve host 'hunter2secret@127.0.0.1'".
        f"postgresql://postgres:ab@{PASSWORD}@127.0.0.1:5432/x",
        # An unencoded `/`: libpq takes "ab" for the port and would print it.
        f"postgresql://postgres:ab/{PASSWORD}@127.0.0.1:5432/x",
        f"host=127.0.0.1 port={PASSWORD} user=postgres",
    ],
)
def test_a_url_whose_password_spills_into_host_or_port_is_refused_unquoted(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generated password holding `@` or `/`, not percent-encoded (the commonest
    mistake in a URL), still parses: part of it becomes the host or the port, which
    libpq's connection error then quotes. A host or port that cannot be one is refused
    before any connection, naming what to encode and never the value."""
    monkeypatch.setenv("DATABASE_URL", url)
    code = main(["local", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "DATABASE_URL is not a PostgreSQL connection URL" in err
    assert "percent-encode" in err
    assert PASSWORD not in err


@pytest.mark.parametrize(
    "url",
    [
        # libpq would answer: invalid percent-encoded token: "ab%zzhunter2secret"
        f"postgresql://postgres:ab%zz{PASSWORD}@127.0.0.1:5432/x",  # pragma: allowlist secret
        # libpq would answer: missing "=" after "hunter2secret"
        f"host=127.0.0.1 user=postgres password=two words {PASSWORD}",
    ],
)
def test_a_malformed_database_url_is_refused_without_its_password(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    code = main(["local", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "DATABASE_URL is not a PostgreSQL connection URL" in err
    assert PASSWORD not in err
    assert "unexpected failure" not in err


def test_an_unreachable_database_is_one_line_and_frees_the_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a DATABASE_URL on a closed port, and the port the API would take
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://postgres:{PASSWORD}@127.0.0.1:9/x?connect_timeout=2"
    )
    port = free_port()
    # When the stack starts
    code = main(["local", "--port", str(port)])
    # Then it says what failed and where, as an expected failure
    err = capsys.readouterr().err
    assert code == 1
    assert "error: cannot use the database:" in err
    assert '"127.0.0.1", port 9 failed' in err
    assert "check DATABASE_URL" in err
    assert "unexpected failure" not in err
    assert PASSWORD not in err
    # And it left nothing behind: no state file, the API's port free again
    assert not STATE_FILE.exists()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
