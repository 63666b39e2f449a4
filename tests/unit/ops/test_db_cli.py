"""`babyshield db`: a malformed database URL is refused clearly, and never echoed."""

from __future__ import annotations

import pytest

from ops.cli import main

# libpq's own parse error would quote "hunter2", the part after the last '='.
MALFORMED = ["not a url", "host=db password=hunter2 hunter2", "postgresql://u@h/db?nope=1"]


@pytest.fixture(autouse=True)
def _away_from_a_running_stack(tmp_path, monkeypatch):
    # `db` commands use a running `make run` of this checkout; these tests want none.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.mark.parametrize("command", ["migrate", "seed"])
@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_database_url_flag_is_a_usage_error(capsys, command, url):
    # When the flag cannot be parsed as a PostgreSQL connection string
    with pytest.raises(SystemExit) as exit_info:
        main(["db", command, "--database-url", url])
    # Then argparse refuses it, like any malformed argument, without repeating it
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "argument --database-url: not a PostgreSQL connection URL" in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def test_malformed_database_url_variable_is_a_clear_error(capsys, monkeypatch):
    # Given DATABASE_URL that libpq cannot parse
    monkeypatch.setenv("DATABASE_URL", "host=db password=hunter2 hunter2")
    # When migrations are applied with it
    code = main(["db", "migrate"])
    # Then one line names the variable, not its value
    err = capsys.readouterr().err
    assert code == 1
    assert "DATABASE_URL is not a PostgreSQL connection URL" in err
    assert "hunter2" not in err
    assert "unexpected failure" not in err
