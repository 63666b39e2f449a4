"""Admin key management: create (secret shown once), list (no secrets), rotate (grace
period), revoke; every change audited."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api


@pytest.fixture
def admin(world):
    admin_id = world.create_user("root@example.com", role="admin")
    return {
        "id": admin_id,
        "headers": {
            "X-API-Key": world.create_key(admin_id, scopes=("admin",)),
            "Authorization": f"Bearer {world.token(admin_id, 'admin')}",
        },
        "partner": world.create_user("partner@example.com"),
    }


def admin_call(admin, method, path, body=None):
    return call_api(method, path, headers=admin["headers"], json_body=body, source_ip=ADMIN_IP)


def recalls_with(key):
    return call_api("GET", "/recalls", headers={"X-API-Key": key})


def create(admin, **body):
    payload = {"owner_id": str(admin["partner"]), "scopes": ["recalls:read"], **body}
    return admin_call(admin, "POST", "/admin/api-keys", payload)


def test_created_key_is_shown_once_works_and_only_its_hash_is_stored(world, admin):
    response = create(admin, rate_limit_per_minute=5)
    assert response.status == 201
    body = response.json()
    key = body["api_key"]
    assert key.startswith(f"bs_{body['key_id']}_")
    assert body["rate_limit_per_minute"] == 5
    assert body["scopes"] == ["recalls:read"]
    # The database holds the SHA-256 of the secret, not the secret
    stored = world.query("SELECT secret_hash FROM api_keys WHERE key_id = %s", (body["key_id"],))
    secret = key.split("_", 2)[2]
    assert bytes(stored[0][0]) == hashlib.sha256(secret.encode()).digest()
    # It works at once
    assert recalls_with(key).status == 200


def test_list_never_shows_secrets_or_hashes(world, admin):
    key = create(admin).json()["api_key"]
    response = admin_call(admin, "GET", "/admin/api-keys")
    assert response.status == 200
    assert key.split("_", 2)[2] not in response.body
    assert all(
        "api_key" not in item and "secret_hash" not in item for item in response.json()["keys"]
    )
    only_partner = admin_call(admin, "GET", "/admin/api-keys", None)
    assert len(only_partner.json()["keys"]) == 2  # the admin's own key and the new one


@pytest.mark.parametrize("value", [True, "7", 7.5])
def test_a_rate_limit_is_a_json_whole_number(world, admin, value):
    # pydantic alone would read true as 1 and "7" as 7
    response = create(admin, rate_limit_per_minute=value)
    assert response.status == 422
    assert response.json()["error"]["fields"] == ["body.rate_limit_per_minute"]


def test_a_rate_limit_written_with_a_zero_fraction_is_that_number(world, admin):
    # JSON Schema's integer, which the OpenAPI document states, admits 7.0.
    response = create(admin, rate_limit_per_minute=7.0)
    assert response.status == 201, response.body
    assert response.json()["rate_limit_per_minute"] == 7


def test_list_filters_by_owner(world, admin):
    create(admin)
    response = call_api(
        "GET",
        "/admin/api-keys",
        headers=admin["headers"],
        query=f"owner_id={admin['partner']}",
        source_ip=ADMIN_IP,
    )
    assert [item["owner_id"] for item in response.json()["keys"]] == [str(admin["partner"])]


def test_rotation_issues_a_successor_and_keeps_the_old_key_for_the_grace_period(world, admin):
    old = create(admin).json()
    response = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate")
    assert response.status == 201
    rotated = response.json()
    assert rotated["new_key"]["rotated_from"] == old["key_id"]
    # Both work during the grace period
    assert recalls_with(rotated["new_key"]["api_key"]).status == 200
    assert recalls_with(old["api_key"]).status == 200
    # The old one expires after the default 7 days
    expires = datetime.fromisoformat(rotated["old_key"]["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)


def test_a_key_is_rotated_once_and_its_successor_keeps_its_life(world, admin):
    """A repeated rotation would copy the grace-shortened expiry into a new key."""
    old = create(admin).json()
    first = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate")
    assert first.status == 201
    successor = first.json()["new_key"]
    assert successor["expires_at"] is None
    # When the same key is rotated again (a retried request, a double click)
    again = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate")
    # Then it is refused, naming the key to rotate instead, and no second successor exists
    assert again.status == 409
    assert successor["key_id"] in again.json()["error"]["message"]
    listed = admin_call(admin, "GET", "/admin/api-keys", None).json()["keys"]
    assert [k["key_id"] for k in listed if k.get("rotated_from") == old["key_id"]] == [
        successor["key_id"]
    ]
    # And the successor rotates as any key does
    assert admin_call(admin, "POST", f"/admin/api-keys/{successor['key_id']}/rotate").status == 201


def test_a_key_whose_successor_was_revoked_is_refused_with_the_way_on(world, admin):
    """The successor's secret went astray and the admin revoked it: the old key has had
    its one successor, and the refusal says what to do rather than "rotate that key"."""
    old = create(admin).json()
    leaked = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate").json()
    leaked_id = leaked["new_key"]["key_id"]
    assert admin_call(admin, "POST", f"/admin/api-keys/{leaked_id}/revoke").status == 200
    # The old key still works for its grace period
    assert recalls_with(old["api_key"]).status == 200
    again = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate")
    assert again.status == 409
    message = again.json()["error"]["message"]
    assert f"{leaked_id}, which is revoked" in message
    assert "issue a new key" in message
    assert "rotate that key" not in message


def _at_least_seconds_left_in_the_minute(seconds: float = 5) -> None:
    """Per-key limits count in fixed one-minute windows; start a burst inside one."""
    remaining = 60 - time.time() % 60
    if remaining < seconds:
        time.sleep(remaining + 0.1)


def test_a_rotated_key_and_its_successor_share_one_budget_during_grace(world, admin):
    # Given a key limited to 3 per minute, rotated: both keys work for the grace period
    old = create(admin, rate_limit_per_minute=3).json()
    new = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate").json()["new_key"]
    _at_least_seconds_left_in_the_minute()
    # When a client alternates between the two within one minute
    statuses = [recalls_with(key).status for key in [old["api_key"], new["api_key"]] * 3]
    # Then they share the one budget: 3 served in all, not 3 each
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_a_key_rotated_again_during_grace_shares_the_budget_along_the_chain(world, admin):
    # Given a key rotated, and its successor rotated before the first grace ended
    first = create(admin, rate_limit_per_minute=3).json()
    second = admin_call(admin, "POST", f"/admin/api-keys/{first['key_id']}/rotate").json()
    third = admin_call(
        admin, "POST", f"/admin/api-keys/{second['new_key']['key_id']}/rotate"
    ).json()
    keys = [first["api_key"], second["new_key"]["api_key"], third["new_key"]["api_key"]]
    _at_least_seconds_left_in_the_minute()
    # When each of the three live keys is used twice
    statuses = [recalls_with(key).status for key in keys * 2]
    # Then the three count as one key
    assert statuses.count(200) == 3
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_when_rotated_keys_limits_differ_the_smaller_live_one_applies(world, admin, caplog):
    from tests.support.logs import json_log_lines

    # Given a rotated key whose successor's limit was since lowered to 2 by hand
    old = create(admin, rate_limit_per_minute=5).json()
    new = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate").json()["new_key"]
    world.execute(
        "UPDATE api_keys SET rate_limit_per_minute = 2 WHERE key_id = %s", (new["key_id"],)
    )
    _at_least_seconds_left_in_the_minute()
    # When the old key (still configured for 5) is used
    statuses = [recalls_with(old["api_key"]).status for _ in range(3)]
    # Then it is held to the smaller limit, and the refusal names the limit applied
    assert statuses == [200, 200, 429]
    refusals = [
        line
        for line in json_log_lines(caplog)
        if line.get("audit") and line.get("auth_event") == "rate_limit_failed"
    ]
    assert refusals
    assert refusals[-1]["limit"] == 2
    assert refusals[-1]["key_id"] == old["key_id"]


def test_a_key_never_rotated_keeps_its_own_budget(world, admin):
    # Given two keys of one owner, neither rotated from the other
    one = create(admin, rate_limit_per_minute=2).json()
    other = create(admin, rate_limit_per_minute=2).json()
    _at_least_seconds_left_in_the_minute()
    # Then each has its own budget
    assert [recalls_with(one["api_key"]).status for _ in range(3)] == [200, 200, 429]
    assert [recalls_with(other["api_key"]).status for _ in range(2)] == [200, 200]


def test_rotation_with_no_grace_ends_the_old_key_now(world, admin):
    old = create(admin).json()
    response = admin_call(
        admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate", {"grace_days": 0}
    )
    assert response.status == 201
    assert recalls_with(old["api_key"]).status == 401
    assert recalls_with(response.json()["new_key"]["api_key"]).status == 200


def test_revoked_key_stops_working_at_once_and_cannot_be_rotated(world, admin):
    key = create(admin).json()
    response = admin_call(admin, "POST", f"/admin/api-keys/{key['key_id']}/revoke")
    assert response.status == 200
    assert response.json()["revoked_at"]
    assert recalls_with(key["api_key"]).status == 401
    again = admin_call(admin, "POST", f"/admin/api-keys/{key['key_id']}/rotate")
    assert again.status == 409


@pytest.mark.parametrize("key_id", ["0123456789abcdef", "not-a-key-id"])
def test_unknown_key_is_404(world, admin, key_id):
    assert admin_call(admin, "POST", f"/admin/api-keys/{key_id}/revoke").status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["root"]},
        {"scopes": []},
        {"rate_limit_per_minute": 0},
        {"owner_id": "not-a-uuid"},
        {"secret_hash": "00"},
        {"client_token": "too-short"},
        {"client_token": "x" * 65},
        {"client_token": "spaces are not allowed"},
        {"client_token": "a" * 16 + "\n"},
        {"client_token": 1234567890123456789},
    ],
)
def test_invalid_create_requests_are_422(world, admin, body):
    assert create(admin, **body).status == 422


TOKEN = "9f0c2a4e-5b1d-4c8e-a7f3-2d6b8e1c0a95"


def test_a_create_sent_again_with_its_client_token_issues_no_second_key(world, admin):
    """A tool that lost the answer sends the create again: a second live key whose
    secret nobody holds would be a credential nobody knows to revoke."""
    before = world.query("SELECT count(*) FROM api_keys")[0][0]
    first = create(admin, client_token=TOKEN)
    audited = len(world.audit_rows())

    again = create(admin, client_token=TOKEN)

    assert first.status == 201, first.body
    key_id = first.json()["key_id"]
    # Refused, naming the key the first create issued and the way on, never a secret
    assert again.status == 409
    message = again.json()["error"]["message"]
    assert key_id in message
    assert "revoke" in message
    assert first.json()["api_key"].split("_", 2)[2] not in again.body
    # and nothing more written: one key, no second audit row of a create
    assert world.query("SELECT count(*) FROM api_keys")[0][0] == before + 1
    assert not [row for row in world.audit_rows()[audited:] if row[1] == "api_key_create"]
    assert recalls_with(first.json()["api_key"]).status == 200
    # A new token is a new key, and the token binds per owner
    assert create(admin, client_token=TOKEN.replace("9", "8")).status == 201
    assert create(admin, owner_id=str(admin["id"]), client_token=TOKEN).status == 201
    # Without a token every create is a new key, as before
    assert create(admin).status == create(admin).status == 201


def test_two_creates_racing_with_one_client_token_issue_one_key(world, admin):
    import threading

    start = threading.Barrier(4)
    statuses: list[int] = []

    def send() -> None:
        start.wait()
        statuses.append(create(admin, client_token=TOKEN).status)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 409, 409, 409]
    keys = world.query("SELECT count(*) FROM api_keys WHERE client_token = %s", (TOKEN,))
    assert keys == [(1,)]


def test_create_for_missing_owner_is_404_and_writes_nothing(world, admin):
    before = world.query("SELECT count(*) FROM api_keys")[0][0]
    response = create(admin, owner_id="00000000-0000-4000-8000-000000000000")
    assert response.status == 404
    assert world.query("SELECT count(*) FROM api_keys")[0][0] == before


def test_an_admin_scoped_key_is_issued_only_to_an_admin(world, admin):
    # Given a user who is not an admin (the partner) and one who is
    before = world.query("SELECT count(*) FROM api_keys")[0][0]

    # When an admin-scoped key is asked for each
    for_user = create(admin, scopes=["admin", "recalls:read"])
    for_admin = create(admin, owner_id=str(admin["id"]), scopes=["admin"])

    # Then the user's is refused and nothing written (promoting the user later
    # would otherwise turn it into an admin credential); the admin's is issued
    assert for_user.status == 409
    assert for_user.json()["error"]["message"] == "Only an admin's key may have the admin scope."
    assert for_admin.status == 201
    assert world.query("SELECT count(*) FROM api_keys")[0][0] == before + 1


def test_a_keys_audit_row_says_what_it_grants(world, admin):
    """An auditor reading audit_log alone must see that an admin-scoped key was
    issued, with its limit and expiry, not only that some key was."""
    created = create(
        admin,
        owner_id=str(admin["id"]),
        scopes=["recalls:read", "admin"],
        rate_limit_per_minute=30,
        expires_in_days=10,
    ).json()
    [detail] = [
        row[4]
        for row in world.audit_rows()
        if row[1] == "api_key_create" and row[4].get("key_id") == created["key_id"]
    ]
    assert detail["scopes"] == "admin,recalls:read"
    assert detail["rate_limit_per_minute"] == 30
    assert detail["expires_at"][:16] == created["expires_at"][:16]  # to the minute


def test_revoking_a_rotated_key_names_its_successors_that_stay_live(world, admin):
    """An admin cutting a partner off revokes the key they know; if it was rotated,
    its successor keeps working. The answer says which keys of the chain still work
    (and a key never rotated names none)."""
    first = create(admin).json()
    second = admin_call(admin, "POST", f"/admin/api-keys/{first['key_id']}/rotate").json()
    second_id = second["new_key"]["key_id"]
    third = admin_call(admin, "POST", f"/admin/api-keys/{second_id}/rotate").json()
    third_id = third["new_key"]["key_id"]

    revoked = admin_call(admin, "POST", f"/admin/api-keys/{first['key_id']}/revoke")

    assert revoked.status == 200
    assert revoked.json()["revoked_at"] is not None
    assert revoked.json()["live_successors"] == [second_id, third_id]
    # Revoked too, it drops out of the answer.
    admin_call(admin, "POST", f"/admin/api-keys/{third_id}/revoke")
    again = admin_call(admin, "POST", f"/admin/api-keys/{first['key_id']}/revoke").json()
    assert again["live_successors"] == [second_id]
    lone = create(admin).json()
    assert (
        admin_call(admin, "POST", f"/admin/api-keys/{lone['key_id']}/revoke").json()[
            "live_successors"
        ]
        == []
    )


def test_changes_are_audited(world, admin):
    key = create(admin).json()
    admin_call(admin, "POST", f"/admin/api-keys/{key['key_id']}/rotate")
    admin_call(admin, "POST", f"/admin/api-keys/{key['key_id']}/revoke")
    actions = [(row[0], row[1], row[2]) for row in world.audit_rows()]
    actor = str(admin["id"])
    assert (actor, "api_key_create", "success") in actions
    assert (actor, "api_key_rotate", "success") in actions
    assert (actor, "api_key_revoke", "success") in actions
    assert all(key["api_key"].split("_", 2)[2] not in str(row) for row in world.audit_rows())


def test_a_refused_key_change_is_audited_with_what_was_asked(world, admin):
    """An admin asking for what the API refuses (an admin-scoped key for a user, a key
    for nobody, the rotation of a revoked key, the revocation of an unknown one) may
    be a stolen admin session probing for a way up: audit_log shows the attempt, who
    made it and what it asked for, not only the changes that were made."""
    actor = str(admin["id"])
    partner = str(admin["partner"])
    revoked = create(admin).json()["key_id"]
    admin_call(admin, "POST", f"/admin/api-keys/{revoked}/revoke")
    before = len(world.audit_rows())

    assert create(admin, scopes=["admin", "recalls:read"]).status == 409
    nobody = "00000000-0000-4000-8000-000000000000"
    assert create(admin, owner_id=nobody).status == 404
    assert admin_call(admin, "POST", f"/admin/api-keys/{revoked}/rotate").status == 409
    unknown = "0" * 16  # a key id no key has
    assert admin_call(admin, "POST", f"/admin/api-keys/{unknown}/revoke").status == 404

    refused = [(row[0], row[1], row[2], row[4]) for row in world.audit_rows()[before:]]
    assert [(a, action, outcome) for a, action, outcome, _ in refused] == [
        (actor, "api_key_create", "failure"),
        (actor, "api_key_create", "failure"),
        (actor, "api_key_rotate", "failure"),
        (actor, "api_key_revoke", "failure"),
    ]
    details = [detail for *_, detail in refused]
    assert details[0]["reason"] == "conflict"
    assert details[0]["owner_id"] == partner
    assert details[0]["scopes"] == "admin,recalls:read"
    assert (details[1]["reason"], details[1]["owner_id"]) == ("not_found", nobody)
    assert (details[2]["reason"], details[2]["rotated_from"]) == ("conflict", revoked)
    assert (details[3]["reason"], details[3]["key_id"]) == ("not_found", unknown)
    # No key was issued by any of them, and no secret is in any row.
    assert not any("api_key" in detail for detail in details)
    assert not any("key_id" in detail for detail in details[:3])


def test_a_create_sent_again_with_its_client_token_writes_no_refusal_row(world, admin):
    """The repeat of a create is the caller's own retry, answered with the key it
    issued; the create's row already records it."""
    token = "retry-token-0123456789"
    assert create(admin, client_token=token).status == 201
    before = len(world.audit_rows())
    assert create(admin, client_token=token).status == 409
    assert world.audit_rows()[before:] == []
