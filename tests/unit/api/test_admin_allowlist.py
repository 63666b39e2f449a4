"""The admin allowlist: source IP from the connection only, IPv4 and IPv6, fail closed."""

from __future__ import annotations

import pytest

from functions.api.middleware.admin_allowlist import address_allowed, is_admin_path
from functions.shared.settings import parse_cidrs
from tests.support.api import call_api
from tests.support.logs import json_log_lines, raw_log_text


@pytest.fixture
def allowlist(monkeypatch):
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "192.0.2.0/24, 2001:db8::/32")


@pytest.mark.parametrize("path", ["/admin", "/admin/users", "/monitoring", "/monitoring/x/y"])
def test_non_allowlisted_address_is_refused_on_every_admin_path(allowlist, path):
    # Given a caller outside the allowlist
    # When it calls any admin or monitoring path (routed or not)
    response = call_api("GET", path, source_ip="203.0.113.9")
    # Then it is refused with 403 and a generic message
    assert response.status == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "header",
    ["X-Forwarded-For", "X-Real-IP", "Forwarded", "X-Client-IP", "True-Client-IP"],
)
def test_spoofed_forwarding_headers_do_not_open_admin(allowlist, header):
    # Given a caller outside the allowlist that claims an allowlisted address in a header
    value = "for=192.0.2.7" if header == "Forwarded" else "192.0.2.7"
    # When it calls an admin path
    response = call_api("GET", "/admin/users", headers={header: value}, source_ip="203.0.113.9")
    # Then the header is ignored
    assert response.status == 403


def test_no_allowlist_means_no_admin_access():
    # Given the default settings (no allowlist configured)
    # When even a loopback caller calls an admin path
    response = call_api("GET", "/admin/users", source_ip="127.0.0.1")
    # Then it is refused: the safe default is closed
    assert response.status == 403


def test_denial_writes_an_audit_line_without_secrets(allowlist, caplog):
    # Given a caller with credentials outside the allowlist
    call_api(
        "GET",
        "/admin/users",
        headers={"Authorization": "Bearer eyJsecret-token", "X-API-Key": "bs_abc_topsecret"},
        source_ip="203.0.113.9",
    )
    # Then an audit line names the event, address and path, and no credential
    lines = json_log_lines(caplog)
    denial = next(line for line in lines if line.get("event") == "admin_ip_denied")
    assert denial["source_ip"] == "203.0.113.9"
    assert denial["path"] == "/admin/users"
    text = raw_log_text(caplog)
    assert "topsecret" not in text
    assert "eyJsecret-token" not in text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/admin", True),
        ("/admin/", True),
        ("/admin/x", True),
        ("/administer", False),
        ("/monitoring", True),
        ("/health", False),
        ("/", False),
    ],
)
def test_admin_path_matching(path, expected):
    assert is_admin_path(path, ("/admin", "/monitoring")) is expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.0.2.1", True),
        ("192.0.3.1", False),
        ("2001:db8::5", True),
        ("2001:db9::5", False),
        ("::ffff:192.0.2.7", True),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_address_matching(address, expected):
    networks = parse_cidrs("192.0.2.0/24,2001:db8::/32")
    assert address_allowed(address, networks) is expected


def test_invalid_cidr_is_a_clear_error():
    with pytest.raises(ValueError, match="invalid CIDR"):
        parse_cidrs("10.0.0.1/8")


def test_allowlist_from_ssm_parameter(aws, monkeypatch):
    # Given the allowlist kept in SSM (as deployed)
    import boto3

    boto3.client("ssm").put_parameter(
        Name="/babyshield/admin-allowed-cidrs", Value="192.0.2.0/24", Type="StringList"
    )
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS_PARAMETER", "/babyshield/admin-allowed-cidrs")
    from functions.shared.blocks import clear_caches

    clear_caches()
    # When an allowlisted and a foreign caller call an admin path
    inside = call_api("GET", "/admin/nothing", source_ip="192.0.2.50")
    outside = call_api("GET", "/admin/nothing", source_ip="198.51.100.1")
    # Then only the allowlisted caller gets past the allowlist
    assert inside.status == 401  # past the allowlist, stopped by the API-key lock
    assert outside.status == 403


def test_the_ssm_read_on_a_request_has_a_requests_time_budget(aws, monkeypatch):
    """A stalled SSM must become a quick refusal, not an API Gateway timeout: the
    background client's budget (10 s reads, more attempts) is for the responder."""
    import boto3

    from functions.shared import blocks
    from functions.shared.aws_clients import REQUEST
    from tests.support.aws import record_client_budgets

    boto3.client("ssm").put_parameter(
        Name="/babyshield/admin-allowed-cidrs", Value="192.0.2.0/24", Type="StringList"
    )
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS_PARAMETER", "/babyshield/admin-allowed-cidrs")
    blocks.clear_caches()
    budgets = record_client_budgets(monkeypatch, blocks)
    assert call_api("GET", "/admin/nothing", source_ip="192.0.2.50").status == 401
    assert budgets == [("ssm", REQUEST)]


def test_unreadable_ssm_parameter_fails_closed(aws, monkeypatch):
    # Given an allowlist parameter that does not exist
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS_PARAMETER", "/babyshield/missing")
    from functions.shared.blocks import clear_caches

    clear_caches()
    # When a caller asks for an admin path
    response = call_api("GET", "/admin/nothing", source_ip="192.0.2.50")
    # Then access is denied, not granted and not a 500
    assert response.status == 403


def test_allowlisted_address_passes_the_allowlist_to_the_next_lock(allowlist):
    # Given an allowlisted caller without credentials
    # When it probes an admin path that has no route
    response = call_api("GET", "/admin/no-such-thing", source_ip="192.0.2.7")
    # Then the allowlist lets it through (not 403), and the next lock refuses it
    # rather than telling it that the route does not exist (not 404)
    assert response.status == 401
