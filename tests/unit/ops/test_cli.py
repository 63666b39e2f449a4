"""The babyshield command: clear errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import argparse
import json
import os
import re

import pytest

from ops.cli import main
from ops.local_server import LocalApiServer
from ops.openapi import openapi_document, render


def test_bad_port_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("PORT", "eighty")
    code = main(["local"])
    err = capsys.readouterr().err
    assert code == 1
    assert "PORT must be a number" in err
    assert "Traceback" not in err


def test_busy_port_is_a_clear_error(capsys, tmp_path, monkeypatch):
    from ops.local_server import api_handler

    # Away from a `make run` of this checkout, which `local` would refuse to start beside.
    monkeypatch.chdir(tmp_path)

    busy = LocalApiServer(("127.0.0.1", 0), api_handler(), quiet=True)
    try:
        code = main(["local", "--port", str(busy.server_address[1])])
    finally:
        busy.server_close()
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot listen" in err
    assert "next:" in err


def test_unknown_command_exits_non_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["rotate", "--all", "db-app"], "not both (--all with db-app)"),
        (["rotate"], "name one secret or pass --all"),
    ],
    ids=["both", "neither"],
)
def test_rotate_says_which_of_a_name_and_all_is_wrong(capsys, args, says):
    """`rotate --all db-app` was told to "name one secret or pass --all": it had passed
    --all."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err


def test_openapi_document_is_current():
    # The committed document is what `make openapi` writes from the routes today.
    from pathlib import Path

    committed = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
    assert committed.read_text() == render(openapi_document()), "run `make openapi`"


def test_openapi_lists_health():
    document = openapi_document()
    assert "/health" in document["paths"]
    assert json.dumps(document)


def test_function_logs_go_to_stderr_warnings_and_audit_lines_only(capsys, monkeypatch):
    import logging

    from functions.shared.observability import logger
    from ops.cli import command_output_only

    # Given the Powertools logger as a Lambda has it (JSON lines on stdout)
    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream, filters = handler.stream, list(handler.filters)

    # When function code logs while a command runs
    with command_output_only():
        logger.info("routine step")
        logger.info("block applied", extra={"audit": {"action": "block"}})
        logger.warning("worth a look")

    # Then the warning and the audit line reached stderr, the routine line nowhere
    captured = capsys.readouterr()
    assert "worth a look" in captured.err
    assert "block applied" in captured.err
    assert "routine step" not in captured.err + captured.out
    # And the handler is as it was afterwards
    assert handler.stream is stream
    assert handler.filters == filters


def test_debug_keeps_every_function_log_line(capsys, monkeypatch):
    from functions.shared.observability import logger
    from ops.cli import command_output_only

    monkeypatch.setenv("BABYSHIELD_DEBUG", "1")
    with command_output_only():
        logger.info("routine step")
    assert "routine step" in capsys.readouterr().err


def test_function_metrics_are_not_written_and_do_not_leak(capsys, monkeypatch):
    from functions.shared.observability import metrics
    from ops.cli import command_output_only

    # Given a command whose function code records a metric and flushes
    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    with command_output_only():
        metrics.add_metric(name="WafIpsBlocked", unit="Count", value=1)
        metrics.flush_metrics()

    # Then no EMF blob reached stdout, and none waits for a later flush
    assert "WafIpsBlocked" not in capsys.readouterr().out
    assert not metrics.metric_set
    assert "POWERTOOLS_METRICS_DISABLED" not in os.environ


def test_function_errors_reach_stderr_without_their_traceback(capsys, monkeypatch):
    """Protects on-call from a traceback: a responder that logs its failure with
    logger.exception (then raises) had its whole stack printed as a JSON field."""
    from functions.shared.observability import logger
    from ops.cli import command_output_only

    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    with command_output_only():
        try:
            raise RuntimeError("lookup failed")
        except RuntimeError:
            logger.exception("WAF responder failed")

    err = capsys.readouterr().err
    assert "WAF responder failed" in err
    assert "Traceback" not in err
    assert "RuntimeError" not in err


@pytest.mark.parametrize(("debug", "shown"), [(None, {"ERROR"}), ("1", {"WARNING", "ERROR"})])
def test_the_database_pools_retry_lines_are_shown_from_error_up(caplog, monkeypatch, debug, shown):
    """Protects the command's one-line error from psycopg_pool's own retry lines
    (`error connecting in ...`, WARNING): BABYSHIELD_DEBUG=1 keeps them."""
    import logging

    from ops.cli import command_output_only

    if debug is None:
        monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    else:
        monkeypatch.setenv("BABYSHIELD_DEBUG", debug)
    pool = logging.getLogger("psycopg.pool")
    filters = list(pool.filters)
    with command_output_only():
        pool.warning("error connecting in 'babyshield-readonly'")
        pool.error("pool broken")
    assert {r.levelname for r in caplog.records if r.name == "psycopg.pool"} == shown
    assert pool.filters == filters


def test_an_invalid_setting_is_one_line_naming_the_variable(capsys, monkeypatch):
    """Protects every command from pydantic's multi-line dump: name the variable."""
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "bogus")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    code = main(["waf", "list"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[0] == (
        "error: environment variable ADMIN_ALLOWED_CIDRS is invalid: "
        "invalid CIDR in the list: 'bogus'"
    )
    assert err.splitlines()[1].startswith("  next:")
    assert len(err.splitlines()) == 2


def test_an_unexpected_failure_names_its_type_and_never_its_message(capsys, monkeypatch):
    """A library's message may quote what it was given (http.client quotes a header
    value it refuses, psycopg a connection string): the one line names the type only."""
    import argparse

    from ops import cli

    def quoting_failure(args: argparse.Namespace) -> int:
        raise ValueError("Invalid header value b'Bearer eyJ-not-for-the-terminal\\n'")

    def parser() -> argparse.ArgumentParser:
        built = argparse.ArgumentParser()
        built.set_defaults(command="openapi", func=quoting_failure)
        return built

    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    monkeypatch.setattr(cli, "build_parser", parser)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert "unexpected failure: ValueError" in err
    assert "eyJ-not-for-the-terminal" not in err


def test_every_command_says_what_it_does_in_its_own_help():
    """`babyshield waf --help` printed the usage and the options, and not what `waf` is
    for; `local --help` did not say that with no subcommand it starts the stack."""
    from ops.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [name for name, sub in commands.choices.items() if not sub.description]
    assert missing == []


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"babyshield \d+\.\d+\.\d+\S*", out), out


@pytest.mark.parametrize(
    "args",
    [
        ["rotate", "--all", "db-app"],  # refused by the command
        ["rotate", "db-ap"],  # a typo in a secret's name
        ["rotate", "db-app", "--wait", "-5"],  # refused by the command
        ["rotate", "db-app", "--wait", "abc"],  # refused by argparse
        ["waf", "block", "203.0.113.7", "--reason", ""],  # refused by the command
        ["waf", "block", "203.0.113.7"],  # refused by argparse: --reason missing
    ],
)
def test_a_refused_argument_exits_2_whoever_refuses_it(capsys, args):
    """`rotate --wait abc` exited 2 (argparse) and `--wait -5` 1; `waf block` without
    --reason 2 and with an empty one 1. A script tells "nothing was tried" (2) from
    "tried and failed" (1) only if every refused argument exits the same way."""
    code: int | str | None
    try:
        code = main(args)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err
