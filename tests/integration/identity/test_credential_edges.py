"""Identity at its edges, through the real handler against PostgreSQL and moto: stored
hashes that ask too much, passwords that read like attacks, an admin key rotated after
its owner's demotion, and credentials presented twice or side by side."""

from __future__ import annotations

import base64

import pytest

from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api
from tests.support.api import sign_in as login


@pytest.fixture
def admins(world):
    root = world.create_user("root@example.com", role="admin")
    other = world.create_user("other-admin@example.com", role="admin")
    return {
        "root": root,
        "other": other,
        "key": world.create_key(root, scopes=("admin",)),
        "token": world.token(root, "admin"),
    }


def admin_call(admins, method, path, body=None):
    headers = {"X-API-Key": admins["key"], "Authorization": f"Bearer {admins['token']}"}
    return call_api(method, path, headers=headers, json_body=body, source_ip=ADMIN_IP)


# --- Sign-in -------------------------------------------------------------------------


def test_a_stored_hash_with_an_out_of_range_cost_is_a_401_not_a_500(world):
    """passwords.py bounds the cost read back from storage so that "a corrupted or
    planted hash must not make one sign-in allocate gigabytes". N=2^20, r=32 passes
    those bounds, needs 4 GiB, and hashlib refuses its maxmem with a ValueError."""
    salt = base64.b64encode(b"s" * 16).decode()
    digest = base64.b64encode(b"d" * 32).decode()
    user_id = world.create_user("victim@example.com")
    world.execute(
        "UPDATE users SET password_hash = %s WHERE id = %s",
        (f"scrypt$1048576$32$1${salt}${digest}", user_id),
    )
    response = login("victim@example.com", "any guess", "198.51.100.77")
    assert response.status == 401, (response.status, response.body)


@pytest.mark.parametrize(
    "password",
    [
        "hunter2'#",  # a quote before '#'
        "pa55../w0rd!",  # '../' inside a generated password
        "Pa$$w0rd..\\9",
        "zz%00zz-Secure",
    ],
)
def test_a_user_can_sign_in_whatever_characters_their_password_has(world, password):
    """A password is hashed, never put in SQL, HTML or a path; attack inspection of the
    login body refuses it (400 rejected_input) before the password is ever checked,
    so these users can never sign in."""
    world.create_user("parent@example.com", password)
    response = login("parent@example.com", password, "198.51.100.77")
    assert response.status == 200, (response.status, response.body)


# --- API keys: rotation successor ----------------------------------------------------


def test_rotation_never_gives_a_non_admin_a_key_with_the_admin_scope(world, admins):
    """insert_api_key refuses the admin scope for a non-admin owner: "issued to a user,
    it would turn into an admin credential on promotion". Rotation copies the scopes
    of the old key without that check, so a demoted admin's admin key is re-issued
    as a brand-new admin-scoped key of a user (valid for its whole life)."""
    key = world.create_key(admins["other"], scopes=("admin", "recalls:read"))
    key_id = key.split("_")[1]
    world.execute("UPDATE users SET role = 'user' WHERE id = %s", (admins["other"],))

    response = admin_call(admins, "POST", f"/admin/api-keys/{key_id}/rotate")

    assert response.status == 409, (response.status, response.body)
    issued = world.query(
        "SELECT count(*) FROM api_keys WHERE owner_id = %s AND 'admin' = ANY (scopes) "
        "AND rotated_from IS NOT NULL",
        (admins["other"],),
    )
    assert issued[0][0] == 0


# --- Presented credentials -----------------------------------------------------------


def test_an_invalid_token_presented_with_a_valid_key_is_refused_on_recalls(world):
    """policies.py: on /recalls "a presented API key or token is verified". With an
    X-API-Key present the Authorization header is never looked at, so a forged or
    expired token goes through unverified and unaudited."""
    user_id = world.create_user("partner@example.com")
    key = world.create_key(user_id)
    response = call_api(
        "GET",
        "/recalls",
        headers={"X-API-Key": key, "Authorization": "Bearer forged.token.value"},
    )
    assert response.status == 401, (response.status, response.body)


def test_an_authorization_header_sent_twice_in_different_case_is_refused(world):
    """authentication.header(): "a header sent twice with different values is refused
    outright, since two layers could each read a different one". Powertools'
    multi_value_headers is a CaseInsensitiveDict, which silently keeps the last of
    `authorization` / `Authorization`, so the ambiguity check never sees two values."""
    from functions.api.handler import lambda_handler
    from ops.apigw import LocalLambdaContext, rest_event

    user_id = world.create_user("parent@example.com")
    event = rest_event(
        "GET",
        "/auth/me",
        headers=[
            ("authorization", "Bearer not-a-token"),
            ("Authorization", f"Bearer {world.token(user_id)}"),
        ],
        source_ip="198.51.100.9",
    )
    response = lambda_handler(event, LocalLambdaContext())
    assert response["statusCode"] == 401, (response["statusCode"], response.get("body"))


def test_a_key_and_a_token_of_different_users_are_refused_on_recalls(world):
    key = world.create_key(world.create_user("partner@example.com"))
    other = world.token(world.create_user("someone-else@example.com"))
    response = call_api(
        "GET", "/recalls", headers={"X-API-Key": key, "Authorization": f"Bearer {other}"}
    )
    assert response.status == 401, (response.status, response.body)


def test_a_key_and_a_token_of_one_user_are_served_as_the_key(world):
    user_id = world.create_user("partner@example.com")
    response = call_api(
        "GET",
        "/recalls",
        headers={
            "X-API-Key": world.create_key(user_id),
            "Authorization": f"Bearer {world.token(user_id)}",
        },
    )
    assert response.status == 200, (response.status, response.body)


# --- the login password, skipped by attack inspection on every path to the route ---

GENERATED_LOOKING = "hunter2'#"  # pragma: allowlist secret


@pytest.mark.parametrize("path", ["/auth/login", "/auth/login/"])
def test_the_login_password_is_opaque_on_every_path_that_reaches_the_login_route(world, path):
    """The resolver routes `/auth/login/` to the login too: the password must be as
    uninspected there as on `/auth/login`."""
    world.create_user("parent@example.com", GENERATED_LOOKING)
    response = call_api(
        "POST", path, json_body={"email": "parent@example.com", "password": GENERATED_LOOKING}
    )
    assert response.status == 200, (response.status, response.body)


# --- an API key and a token of different users on /recalls ---


def test_a_refused_key_and_token_pair_is_not_audited_as_a_key_success(world, caplog):
    """authenticate() checks the key fully (_key_caller: the key's per-minute budget is
    spent and an `api_key_succeeded` audit line written) before it compares the key's
    owner with the token's subject. The pair is then refused (401), but the audit
    trail already says the key authenticated, for a request that was never served."""
    from tests.support.logs import json_log_lines

    owner = world.create_user("partner@example.com")
    key = world.create_key(owner)
    other = world.token(world.create_user("someone-else@example.com"))
    response = call_api(
        "GET", "/recalls", headers={"X-API-Key": key, "Authorization": f"Bearer {other}"}
    )
    assert response.status == 401
    events = [line.get("auth_event") for line in json_log_lines(caplog) if line.get("audit")]
    assert "api_key_failed" in events, events
    assert "api_key_succeeded" not in events, events
