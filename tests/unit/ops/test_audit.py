"""`babyshield audit`: PASS against the real API edge, the matching FAIL against a weakened one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ops.audit import Target, run_audit
from ops.audit_checks import FAIL, PASS, SKIP
from ops.cli import main
from ops.local_server import LocalApiServer, api_handler

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture(autouse=True)
def _no_database(monkeypatch):
    # No database here: the audit rows that admin refusals write fail fast instead of
    # waiting the pool's full timeout on every refused admin probe.
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "0.2")
    from functions.shared.db.pools import close_pools

    close_pools()
    yield
    close_pools()


@contextmanager
def serving(handler: Handler) -> Iterator[str]:
    server = LocalApiServer(("127.0.0.1", 0), handler, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def statuses(url: str) -> dict[str, str]:
    return {check.name: check.status for check in run_audit(Target(url=url))}


def without_header(name: str) -> Handler:
    real = api_handler()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = real(event, context)
        for key in ("headers", "multiValueHeaders"):
            response[key] = {k: v for k, v in (response.get(key) or {}).items() if k != name}
        return response

    return handler


def admin_opened() -> Handler:
    real = api_handler()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["path"].startswith("/admin"):
            return {"statusCode": 200, "headers": {}, "body": "[]"}
        return real(event, context)

    return handler


def leaking_errors() -> Handler:
    real = api_handler()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("queryStringParameters"):
            return {"statusCode": 500, "headers": {}, "body": 'Traceback: syntax error at "OR"'}
        return real(event, context)

    return handler


def test_real_edge_passes_every_applicable_check():
    # Given the API as built, served over HTTP
    with serving(api_handler()) as url:
        # When the audit runs
        results = statuses(url)
    # Then nothing fails; TLS is skipped on plain http
    assert FAIL not in results.values(), results
    assert results["security_headers"] == PASS
    assert results["tls"] == SKIP


@pytest.mark.parametrize(
    ("weakened", "check"),
    [
        (lambda: without_header("Strict-Transport-Security"), "security_headers"),
        (lambda: without_header("X-Content-Type-Options"), "security_headers"),
        (admin_opened, "admin_requires_allowlist"),
        (admin_opened, "admin_ignores_forwarded_for"),
        (leaking_errors, "sql_injection_probes"),
    ],
    ids=["no-hsts", "no-nosniff", "admin-open", "admin-open-xff", "error-leak"],
)
def test_weakened_app_fails_the_matching_check(weakened, check):
    # Given an app with one protection removed
    with serving(weakened()) as url:
        # When the audit runs
        results = statuses(url)
    # Then exactly the check that covers it fails
    assert results[check] == FAIL


def test_json_output_and_exit_code(capsys, monkeypatch):
    # The API runs in this process, so its EMF metric lines (printed to stdout, as in
    # Lambda) would land in the CLI's JSON output; the real audit runs out of process.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with serving(without_header("X-Frame-Options")) as url:
        code = main(["audit", "--url", url, "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    names = {c["name"]: c["status"] for c in document["checks"]}
    assert names["security_headers"] == FAIL
    assert all(set(c) == {"name", "status", "detail"} for c in document["checks"])


def test_unreachable_url_is_a_clear_error(capsys):
    code = main(["audit", "--url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach" in err
    assert "Traceback" not in err


def test_not_a_url_is_a_clear_error(capsys):
    code = main(["audit", "--url", "ftp://example"])
    assert code == 1
    assert "not an http(s) URL" in capsys.readouterr().err
