"""`babyshield audit`: PASS against the real API edge, the matching FAIL against a weakened one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ops.audit import AWS_CHECK_NAMES, Target, run_audit
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
def serving(handler: Handler, *, quiet: bool = True) -> Iterator[str]:
    server = LocalApiServer(("127.0.0.1", 0), handler, quiet=quiet)
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


def too_many_requests() -> dict[str, Any]:
    """A 429 as the edge's rate rule or a spent API key answers it, headers and all."""
    from functions.api.middleware.security_headers import apply_security_headers

    return apply_security_headers(
        {
            "statusCode": 429,
            "headers": {"Content-Type": "application/json", "Retry-After": "42"},
            "body": '{"error":{"code":"too_many_requests","message":"Too many requests."}}',
        }
    )


AUDIT_KEY = "bs_audit_key"


def key_with_limit(limit: int) -> Handler:
    """The API with the audit key limited to `limit` requests for the whole test: what
    a second audit within the key's window meets once the first has spent it."""
    from functions.api.middleware.security_headers import apply_security_headers

    real = api_handler()
    spent = 0

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        nonlocal spent
        if (event.get("headers") or {}).get("X-API-Key") != AUDIT_KEY:
            return real(event, context)
        spent += 1
        if spent > limit:
            return too_many_requests()
        ok = {"statusCode": 200, "headers": {}, "body": '{"items":[]}'}
        return apply_security_headers(ok)

    return handler


def everything_rate_limited(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return too_many_requests()


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
def test_weakened_app_fails_the_matching_check(weakened, check, monkeypatch):
    # Given an app with one protection removed, and admins on a network of their own
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "203.0.113.0/24")
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
    assert code == 2  # a usage error: nothing was tried
    assert "not an http(s) URL" in capsys.readouterr().err


def test_a_second_audit_in_the_key_window_does_not_pass_what_it_did_not_test():
    # Given a key whose limit covers one audit's probes and a few more requests
    probes_with_key = 5  # the SQL injection and XSS probes carry the key
    with serving(key_with_limit(probes_with_key + 3)) as url:
        # When the audit runs twice within the key's window
        first = {c.name: c for c in run_audit(Target(url=url, api_key=AUDIT_KEY))}
        second = {c.name: c for c in run_audit(Target(url=url, api_key=AUDIT_KEY))}
    # Then the first run saw the limit hit by its own requests
    assert first["rate_limiting"].status == PASS
    assert first["rate_limiting"].detail.startswith("3 requests accepted, then 429")
    assert first["xss_probes"].status == PASS
    # And the second, refused before its requests reached the API, passes none of those
    for name in ("sql_injection_probes", "xss_probes", "rate_limiting"):
        assert second[name].status == FAIL, second[name]
        assert second[name].detail.startswith("not performed:"), second[name]
        assert "wait 42 s" in second[name].detail
    assert "already spent" in second["rate_limiting"].detail


def test_checks_answered_only_by_the_rate_limit_are_not_performed():
    # Given an edge whose rate rule answers every request 429 (with the security headers)
    with serving(everything_rate_limited) as url:
        # When the audit runs
        results = run_audit(Target(url=url, api_key=AUDIT_KEY))
    # Then no HTTP check passes: each says it was not performed and why
    http_checks = [c for c in results if c.name not in AWS_CHECK_NAMES and c.status != SKIP]
    assert {c.name for c in http_checks} >= {
        "security_headers",
        "admin_requires_allowlist",
        "path_traversal_probe",
        "bad_input_is_4xx",
        "authentication_required",
        "rate_limiting",
    }
    for check in http_checks:
        assert check.status == FAIL, check
        assert check.detail.startswith("not performed:"), check


def test_a_rate_limited_audit_exits_non_zero(capsys):
    # Given an API that answers /health but rate-limits the rest
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["path"] == "/health":
            return api_handler()(event, context)
        return too_many_requests()

    with serving(handler) as url:
        # When the audit runs from the command line
        code = main(["audit", "--url", url, "--no-aws"])
    out = capsys.readouterr().out
    # Then it does not report success
    assert code == 1
    assert "not performed: rate-limited (429)" in out


def test_no_aws_flag_is_the_reason_the_aws_checks_are_skipped(capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with serving(api_handler()) as url:
        main(["audit", "--url", url, "--json", "--no-aws"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    for name in AWS_CHECK_NAMES:
        assert checks[name]["status"] == SKIP
        assert "--no-aws" in checks[name]["detail"]
        assert "no AWS access" not in checks[name]["detail"]


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "1e300"])
def test_bad_timeout_is_a_usage_error(capsys, timeout):
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--url", "http://127.0.0.1:9", f"--timeout={timeout}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "argument --timeout" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:port", "http://[::1"])
def test_malformed_url_is_a_clear_error(capsys, url):
    code = main(["audit", "--url", url])
    err = capsys.readouterr().err
    assert code == 2
    assert "not an http(s) URL" in err
    assert "unexpected failure" not in err


def test_admin_checks_from_an_allowlisted_address_are_not_passed(monkeypatch):
    # Given an API whose admin allowlist holds the auditor's own address
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "127.0.0.1/32")
    with serving(api_handler()) as url:
        # When the audit runs from that address
        checks = {c.name: c for c in run_audit(Target(url=url))}
    # Then the admin checks say why they could not be made, and pass nothing
    for name in (
        "admin_requires_allowlist",
        "monitoring_requires_allowlist",
        "admin_ignores_forwarded_for",
    ):
        assert checks[name].status == SKIP, checks[name]
        assert "this address is allowlisted" in checks[name].detail


def test_an_auditor_refused_at_the_edge_passes_no_http_check():
    # Given an edge that blocks the auditor's address, in front of an API that would
    # fail every probe (a 500 with a trace)
    from functions.api.middleware.security_headers import apply_security_headers

    def blocked(event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = '{"error":{"code":"request_refused","message":"Forbidden"}}'
        return apply_security_headers({"statusCode": 403, "headers": {}, "body": body})

    with serving(blocked) as url:
        results = run_audit(Target(url=url), aws_skip_reason="not here")
    # Then the audit says it never reached the API, and nothing passes
    http_checks = [c for c in results if c.name not in AWS_CHECK_NAMES]
    assert [(c.name, c.status) for c in http_checks] == [("edge_admits_auditor", FAIL)]
    assert "refused at the edge" in http_checks[0].detail


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("max-age=63072000; includeSubDomains; preload", 63072000),
        ('max-age="31536000"; includeSubDomains', 31536000),
        ("MAX-AGE=0; includeSubDomains", 0),
        ("max-age=; includeSubDomains", 0),
        ("max-age=1e9; includeSubDomains", 0),
        ("includeSubDomains", 0),
    ],
)
def test_hsts_max_age_is_read_as_browsers_read_it(header, seconds):
    from ops.audit import HSTS_MIN_AGE_SECONDS, _hsts_max_age

    assert _hsts_max_age(header) == seconds
    # max-age=0 tells browsers to drop HSTS: the audit needs a year at least
    assert (seconds >= HSTS_MIN_AGE_SECONDS) == (seconds in (63072000, 31536000))


def test_every_audit_request_names_a_user_agent_the_waf_admits():
    # Given an API that records the User-Agent of every request it is sent
    import re

    from functions.shared.waf_rules import user_agent_patterns

    real = api_handler()
    seen: list[str | None] = []

    def recording(event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        seen.append(headers.get("user-agent"))
        return real(event, context)

    with serving(recording) as url:
        # When the whole HTTP audit runs against it
        run_audit(Target(url=url), aws_skip_reason="not here")
    # Then every request carried one: the WAF's core rule set (NoUserAgent_HEADER)
    # blocks those without, which would make the audit of a deployment all 403s
    assert seen
    assert all(seen), f"{seen.count(None)} of {len(seen)} requests had no User-Agent"
    # and none that the suspicious-user-agents rule would block
    for agent in set(seen):
        assert agent is not None
        assert not any(re.search(p, agent.lower()) for p in user_agent_patterns()), agent


def test_a_rotation_stuck_at_awspending_fails_the_secret_ages_check(monkeypatch):
    # Given an inventory secret within its period whose rotation stopped at AWSPENDING
    # days ago: the RotationsStuck alarm fires, and the next rotation is blocked
    from datetime import UTC, datetime, timedelta

    from functions.shared.rotation import age
    from ops.audit_aws import check_secret_ages

    rotated = datetime.now(UTC) - timedelta(days=3)
    stuck = age.SecretAge(
        name="babyshield/db-app",
        kind="database",
        period_days=30,
        last_rotated=rotated,
        age_days=3.0,
        next_due=rotated + timedelta(days=30),
        overdue=False,
        pending="0f1e2d3c-version",
        stuck=True,
    )
    monkeypatch.setattr(age, "secret_ages", lambda: [stuck])
    # When the audit's secret check runs
    (result,) = check_secret_ages()
    # Then it fails naming the secret and the runbook section that resumes or cancels it
    assert result.status == FAIL, result
    assert "babyshield/db-app" in result.detail
    assert "A rotation failed" in result.detail


def redirecting(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What a URL that is not the API's (a load balancer's http->https, a login page in
    front of it) answers: a redirect to somewhere else, whatever was asked."""
    from functions.api.middleware.security_headers import apply_security_headers

    redirect = {"statusCode": 302, "headers": {"Location": "https://elsewhere.example/"}}
    return apply_security_headers({**redirect, "body": ""})


def test_probes_answered_by_a_redirect_do_not_pass():
    # Given a URL that redirects every request, so no probe reaches the API
    with serving(redirecting) as url:
        # When the audit runs
        checks = {c.name: c for c in run_audit(Target(url=url), aws_skip_reason="not here")}
    # Then neither the probe checks nor the header check claim a test that was not made
    for name in ("sql_injection_probes", "xss_probes", "path_traversal_probe"):
        assert checks[name].status == FAIL, checks[name]
        assert "302" in checks[name].detail, checks[name]
    assert "redirect" in checks["sql_injection_probes"].detail
    assert checks["security_headers"].status == FAIL, checks["security_headers"]
    assert "302" in checks["security_headers"].detail


def test_the_security_headers_check_names_the_statuses_it_judged():
    # Given an API whose health check answers 503 (its database is down)
    from functions.api.middleware.security_headers import apply_security_headers

    real = api_handler()

    def unhealthy(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["path"] == "/health":
            body = '{"status":"unavailable"}'
            return apply_security_headers({"statusCode": 503, "headers": {}, "body": body})
        return real(event, context)

    with serving(unhealthy) as url:
        checks = {c.name: c for c in run_audit(Target(url=url), aws_skip_reason="not here")}
    # Then its line says which answers carried the headers, not "a 200 and a 404"
    detail = checks["security_headers"].detail
    assert "(503)" in detail, detail
    assert "(404)" in detail, detail
    assert "200" not in detail, detail


@pytest.mark.parametrize("retry_after", ["²", "9" * 5000, "-1", "1.5"])
def test_an_unusable_retry_after_fails_the_rate_limit_check_alone(retry_after):
    # Given a key limit whose 429 sends a Retry-After that is not ASCII digits
    # ('²' passes str.isdigit() but not int()), or too long for int()
    from functions.api.middleware.security_headers import apply_security_headers

    real = key_with_limit(10)  # the injection probes spend 5 of them

    def odd_retry_after(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = real(event, context)
        if response["statusCode"] == 429:
            response["headers"]["Retry-After"] = retry_after
            response = apply_security_headers(response)
        return response

    with serving(odd_retry_after) as url:
        # When the audit runs with that key
        results = run_audit(Target(url=url, api_key=AUDIT_KEY), aws_skip_reason="not here")
    checks = {c.name: c for c in results}
    # Then the rate limit check fails saying why, and every other result is kept
    assert checks["rate_limiting"].status == FAIL, checks["rate_limiting"]
    assert "Retry-After" in checks["rate_limiting"].detail
    assert "security_headers_on_every_answer" in checks


@pytest.mark.parametrize("header", ["max-age=" + "9" * 5000, "max-age=³¹⁵³⁶⁰⁰⁰"])
def test_an_hsts_max_age_int_cannot_read_counts_as_none(header):
    from ops.audit import _hsts_max_age

    assert _hsts_max_age(header) == 0


def test_a_check_that_breaks_partway_fails_under_the_names_it_reports(closed_https_url):
    # Given an https URL nothing answers: each check's requests raise partway through
    # (check_tls has reported tls and tls_legacy_refused when its HSTS request fails)
    from ops.audit import HTTP_CHECK_NAMES

    # When the audit runs
    results = run_audit(Target(url=closed_https_url, timeout=2), aws_skip_reason="not here")
    # Then each HTTP check is reported once, under its own name, as a FAIL: --json
    # holds the same set of check names whatever broke
    http_checks = [c for c in results if c.name not in AWS_CHECK_NAMES]
    names = [c.name for c in http_checks]
    assert sorted(names) == sorted(HTTP_CHECK_NAMES), names
    by_name = {c.name: c for c in http_checks}
    assert by_name["hsts_over_tls"].status == FAIL
    assert "no answer" in by_name["hsts_over_tls"].detail


@pytest.fixture
def closed_https_url() -> str:
    """An https URL on a loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}"


def test_a_stand_in_502_is_judged_as_the_gateway_answer_aws_sends():
    # Given an API handler that raises: in AWS, API Gateway answers the failed
    # invocation itself, with its DEFAULT_5XX gateway response (cdk/api.py)
    from ops.audit import made_by_the_gateway

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with serving(broken) as url:
        # When the audit's client asks it anything
        answer = Target(url=url).request("GET", "/health")
    # Then the answer is the gateway's: its error type, every security header the
    # gateway response can carry, and no CSP, which its header mappings cannot hold
    assert answer.status == 502
    assert made_by_the_gateway(answer), answer.headers
    assert answer.header("content-security-policy") is None, answer.headers
    assert answer.header("x-frame-options") == "DENY"
    assert answer.header("strict-transport-security")


def test_a_check_that_raises_keeps_the_other_results(monkeypatch):
    # Given a check that reports one result, then raises something no request raises
    from ops import audit
    from ops.audit_checks import Check

    def breaks_after_one(target: Target) -> Iterator[Check]:
        yield Check("first", PASS, "fine")
        raise ValueError("an answer it could not read")

    def after(target: Target) -> Iterator[Check]:
        yield Check("later", PASS, "fine")

    checks = {breaks_after_one: ("first", "second"), after: ("later",)}
    monkeypatch.setattr(audit, "CHECKS", checks)
    with serving(api_handler()) as url:
        # When the audit runs
        results = run_audit(Target(url=url), aws_skip_reason="not here")
    # Then the broken check FAILs under the name it had yet to report, naming the
    # error's type only, and the checks after it still run
    http_checks = [(c.name, c.status, c.detail) for c in results if c.name not in AWS_CHECK_NAMES]
    assert http_checks == [
        ("first", PASS, "fine"),
        ("second", FAIL, "the check itself failed: ValueError"),
        ("later", PASS, "fine"),
    ]
