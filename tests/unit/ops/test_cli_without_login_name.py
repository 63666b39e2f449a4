"""The CLI in a shell that cannot say who runs it: a container under an arbitrary uid,
with no USER or LOGNAME and no passwd entry, where getpass.getuser() raises."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import main
from ops.console import cli_caller

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def nameless(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 54321")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


@pytest.mark.parametrize("action", [["block", "--reason", "scan"], ["unblock"]])
def test_a_block_or_unblock_without_a_name_asks_for_by_before_any_aws_call(
    nameless: None, action: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Who blocked or unblocked is audited: with no name to take, the command asks for
    --by in one line instead of auditing nobody or dying in the parser."""
    code = main(["waf", action[0], "203.0.113.7", *action[1:]])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot tell who is acting" in err
    assert "--by NAME" in err
    assert "Traceback" not in err


def test_the_secret_read_audit_names_the_uid_when_there_is_no_name(nameless: None) -> None:
    assert cli_caller() == f"babyshield-cli:uid-{os.getuid()}"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="switching to a uid without a passwd entry needs root and setpriv",
)
def test_a_real_uid_without_a_passwd_entry_gets_the_help_not_a_traceback() -> None:
    """Every command used to die with a KeyError traceback there, --help included: the
    parser called getpass.getuser() while it was built, outside main's error handling."""
    answer = subprocess.run(
        [
            "setpriv",
            "--reuid=54321",
            "--regid=54321",
            "--clear-groups",
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from ops.cli import main; "
            "sys.exit(main(['waf', 'unblock', '203.0.113.7', '--help']))",
            str(REPO),
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/tmp",
        check=False,
    )
    assert "Traceback" not in answer.stderr, answer.stderr[-600:]
    assert answer.returncode == 0, answer.stderr[-600:]
    assert "--by" in answer.stdout
