"""Which paths need which credential, and that public paths stay cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from functions.api.middleware.policies import Policy, policy_for
from functions.shared.settings import get_settings
from tests.support.api import call_api


@pytest.mark.parametrize(
    ("path", "policy"),
    [
        ("/health", Policy.PUBLIC),
        ("/auth/login", Policy.PUBLIC),
        ("/.well-known/jwks.json", Policy.PUBLIC),
        ("/auth/me", Policy.USER),
        ("/me/subscriptions", Policy.USER),
        ("/me", Policy.USER),
        ("/meme", Policy.PUBLIC),
        ("/recalls", Policy.OPTIONAL),
        ("/recalls/12", Policy.OPTIONAL),
        ("/webhooks/recalls", Policy.WEBHOOK),
        ("/admin/users", Policy.ADMIN),
        ("/monitoring/x", Policy.ADMIN),
        ("/administrator", Policy.PUBLIC),
    ],
)
def test_policy_table(path, policy):
    assert policy_for(path, get_settings()) is policy


def test_health_ignores_credentials_and_loads_no_crypto_or_aws_library():
    # Given a fresh interpreter with only AWS_REGION set
    code = (
        "import sys\n"
        "from tests.support.api import call_api\n"
        "r = call_api('GET', '/health', headers={'Authorization': 'Bearer x', 'X-API-Key': 'y'})\n"
        "assert r.status == 200, r.status\n"
        "loaded = [m for m in ('jwt', 'cryptography', 'boto3', 'psycopg') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    # Then /health answers and neither pyjwt, cryptography, boto3 nor psycopg was imported
    assert result.returncode == 0, result.stderr[-2000:]


def test_protected_path_without_route_is_404_not_401():
    # Scanners probing unknown paths under /me get the same 404 as anywhere else.
    assert call_api("GET", "/me/no-such-thing").status == 404


@pytest.mark.parametrize("path", ["/auth/me/", "/me/subscriptions/"])
def test_trailing_slash_variants_of_protected_routes_still_need_a_token(identity_env, path):
    # Powertools routes "/x/" like "/x"; the policy must treat them alike.
    assert call_api("GET", path).status == 401


@pytest.mark.parametrize("path", ["//admin/users", "/./admin/users", "/%61dmin/users"])
def test_disguised_admin_paths_reach_no_route(path):
    # Paths that dodge the prefix check must not reach the admin route either.
    assert call_api("GET", path, source_ip="203.0.113.9").status in {400, 404}
