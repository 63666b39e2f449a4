"""The API's write paths when a part fails halfway: nothing half-written, nothing lost,
nothing counted twice, and a clear answer.

Every test drives the real handler (functions/api/handler.py through
tests.support.api.call_api) against real PostgreSQL and the moto server, with a
fault put in front of one of them:

- `faulty_aws`: an HTTP proxy in front of moto (as in
  tests/integration/identity/test_webhook_replay_store.py) that, per call, lets it
  through, applies it and drops the answer (the connection closes: botocore retries
  the call), or answers a 500 without forwarding it (every attempt fails);
- `commit_cutter`: a TCP proxy in front of PostgreSQL for the app tier that forwards
  the COMMIT of a chosen transaction and then closes the client's connection before
  the server's answer reaches it (the transaction is committed; the API cannot know).

Each docstring says what a user met before the fix.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld, world
from tests.support.api import ApiResponse, call_api
from tests.support.api import sign_in as login
from tests.support.aws_faults import (
    DROP_ANSWER,
    FAIL,
    PASS,
    AwsFaults,
    faulty_aws_endpoint,
    first_only,
)
from tests.support.identity import identity_env
from tests.support.tcp_proxy import TcpProxy

__all__ = ["identity_env", "world"]


# --- a proxy in front of moto ---------------------------------------------------------


@pytest.fixture
def faulty_aws(world, monkeypatch) -> Iterator[AwsFaults]:
    with faulty_aws_endpoint(monkeypatch) as faults:
        yield faults


# --- a proxy in front of PostgreSQL that loses the answer to one COMMIT ---------------


class CommitCutter(TcpProxy):
    """Forwards PostgreSQL traffic; once armed, the first transaction whose statements
    contain `marker` has its COMMIT forwarded and then its connection cut before the
    server's answer is relayed."""

    def __init__(self, target: tuple[str, int]):
        super().__init__(*target)
        self.marker: bytes | None = None
        self.cut = 0
        self._arming = threading.Lock()

    def arm(self, marker: bytes) -> None:
        self.marker = marker

    def relay(
        self, data: bytes, sink: socket.socket, *, upstream: bool, state: dict[str, Any]
    ) -> bool:
        if not upstream:
            if not state.get("silenced"):
                sink.sendall(data)
            return True
        marker = self.marker
        if marker is not None and marker in data:
            state["seen"] = True
        if state.get("seen") and b"COMMIT" in data:
            with self._arming:
                take = self.marker is not None
                self.marker = None
            if take:
                state["silenced"] = True
                sink.sendall(data)
                time.sleep(0.5)  # the server commits
                self.cut += 1
                return False
        sink.sendall(data)
        return True


@pytest.fixture
def commit_cutter(world, monkeypatch) -> Iterator[CommitCutter]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    app_url = world.db.tier("app")
    params = conninfo_to_dict(app_url)
    cutter = CommitCutter((str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)))
    monkeypatch.setenv(
        "DATABASE_APP_URL", make_conninfo(app_url, host="127.0.0.1", port=cutter.port)
    )
    close_pools()
    get_settings.cache_clear()
    try:
        yield cutter
    finally:
        close_pools()
        cutter.close()


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def admin(world: IdentityWorld) -> dict[str, Any]:
    admin_id = world.create_user("root@example.com", role="admin")
    return {
        "id": admin_id,
        "headers": world.admin_headers(admin_id),
        "partner": world.create_user("partner@example.com"),
    }


def admin_call(admin: dict[str, Any], method: str, path: str, body: object = None) -> ApiResponse:
    return call_api(method, path, headers=admin["headers"], json_body=body, source_ip=ADMIN_IP)


def _is_api_error(response: ApiResponse, status: int) -> None:
    assert response.status == status, (response.status, response.body)
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "correlation_id", "fields"}
    assert "Traceback" not in response.body


def _lockout_update(target: str, body: bytes) -> bool:
    return target.endswith(".UpdateItem") and b"signin#account#" in body


# --- sign-in ---------------------------------------------------------------------------


def test_a_lost_answer_to_a_sign_in_reservation_counts_one_wrong_password_twice(world, faulty_aws):
    """A parent types a wrong password once while DynamoDB's answer to the attempt
    reservation is lost (a dropped connection, a read timeout after the write). The
    API's client retries the non-idempotent `ADD failures :one`, so that one attempt is
    counted twice. Three more typos (four in all, under the documented threshold of
    five) lock the account: the correct password is then refused with 429.

    Cause: SignInLockout._reserve (functions/shared/identity/lockout.py) is an
    unconditional increment retried by botocore's standard retry (aws_clients.REQUEST,
    two attempts); unlike claim_message_id, it carries no token telling its own write
    from another's."""
    world.create_user("parent@example.com", "correct horse")
    faulty_aws.rule = first_only(_lockout_update, DROP_ANSWER)

    first = login("parent@example.com", "wrong")
    assert faulty_aws.disturbed(DROP_ANSWER), "the proxy lost no reservation answer"
    _is_api_error(first, 401)
    for _ in range(3):
        _is_api_error(login("parent@example.com", "wrong"), 401)

    # Four failures, one below the threshold of five: the right password still works
    right = login("parent@example.com", "correct horse")
    assert right.status == 200, (
        f"four wrong passwords locked the account: {right.status} {right.body}"
    )


def test_a_lock_that_could_not_be_written_refuses_the_account_for_the_whole_window(
    world, faulty_aws, monkeypatch
):
    """The failure that reaches the threshold must lock the account for the base
    lockout (here 1 s), after which one more attempt is allowed. If DynamoDB fails the
    lock write, sign-in logs "only a lock may be missing" and answers 401; but the
    record stays at the threshold with no `lock_at`, so every later sign-in, with the
    right password too, is refused 429 "Retry-After: 1" until the whole failure window
    (15 minutes by default) has passed since the last attempt. The user is told to
    come back in one second, and is refused again each second, for 15 minutes: a
    failed write turned a short lock into the longest one and lies about it.

    Cause: functions/api/identity/sign_in.py::_record_failure swallows the
    LockoutUnavailable from SignInLockout._lock_if_due, and SignInLockout._reserve
    (functions/shared/identity/lockout.py) then takes a record at the threshold with
    no lock for "a check still in flight" (PENDING_RETRY_SECONDS) until its TTL."""
    from functions.shared.identity import lockout
    from functions.shared.settings import get_settings

    monkeypatch.setenv("LOGIN_ACCOUNT_FAILURE_THRESHOLD", "2")
    monkeypatch.setenv("LOGIN_LOCKOUT_BASE_SECONDS", "1")
    # How long a check at the threshold may still be running (10 s in AWS).
    monkeypatch.setattr(lockout, "CHECK_IN_FLIGHT_SECONDS", 2)
    get_settings.cache_clear()
    world.create_user("parent@example.com", "correct horse")
    # The lock write fails on every attempt (DynamoDB 500s); everything else passes.
    faulty_aws.rule = lambda target, body: (
        FAIL if _lockout_update(target, body) and b"lock_at = failures" in body else PASS
    )

    _is_api_error(login("parent@example.com", "wrong"), 401)
    _is_api_error(login("parent@example.com", "wrong"), 401)
    assert faulty_aws.disturbed(FAIL), "no lock write was failed"
    faulty_aws.rule = lambda target, body: PASS

    # Past the time the check could still be running, and past the 1 s lock it should
    # have set from its reservation, the right password is checked.
    time.sleep(2.5)
    right = login("parent@example.com", "correct horse")
    assert right.status == 200, (
        f"{right.status} Retry-After={right.header('Retry-After')}: the account is held "
        "for the whole failure window"
    )


# --- per-key rate limit ----------------------------------------------------------------


def test_a_lost_answer_to_the_rate_limiter_spends_two_of_a_keys_requests(world, faulty_aws):
    """A partner key allowed 2 requests a minute makes one request whose rate-limit
    answer from DynamoDB is lost: botocore's retry repeats `ADD hits :one`, so that one
    request is counted twice and the partner's second request of the minute is
    refused 429 although only one was served.

    Cause: FixedWindowRateLimiter.hit (functions/shared/identity/rate_limit.py) is a
    non-idempotent increment sent through a client that retries it."""
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=2)
    faulty_aws.rule = first_only(
        lambda target, body: target.endswith(".UpdateItem") and b"apikey#" in body, DROP_ANSWER
    )

    first = call_api("GET", "/recalls", headers={"X-API-Key": key})
    assert faulty_aws.disturbed(DROP_ANSWER), "the proxy lost no rate-limit answer"
    assert first.status == 200, first.body
    second = call_api("GET", "/recalls", headers={"X-API-Key": key})
    assert second.status == 200, f"the second of two allowed requests: {second.status}"


# --- API keys: a COMMIT whose answer is lost -----------------------------------------


def _live_keys_of(world: IdentityWorld, owner: uuid.UUID) -> list[str]:
    return [
        row[0]
        for row in world.query(
            "SELECT key_id FROM api_keys WHERE owner_id = %s AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at",
            (owner,),
        )
    ]


def _audited(world: IdentityWorld, action: str) -> list[dict[str, Any]]:
    return [row[4] for row in world.audit_rows() if row[1] == action]


def test_a_key_whose_commit_answer_was_lost_is_audited_and_the_answer_says_it_may_exist(
    world, admin, commit_cutter
):
    """An admin creates a partner key; PostgreSQL commits it but the connection drops
    before the COMMIT's answer arrives. Before, the API answered the plain 503 of a
    change that wrote nothing (the retry issued a second key), and no `api_key_create`
    row said who issued the first: a live credential the audit log did not know. The
    row now commits with the key, and the 503 says the change may have been made."""
    partner = admin["partner"]
    commit_cutter.arm(b"INSERT INTO public.api_keys")
    body = {"owner_id": str(partner), "scopes": ["recalls:read"]}

    lost = admin_call(admin, "POST", "/admin/api-keys", body)
    assert commit_cutter.cut == 1, "the proxy cut no COMMIT"
    _is_api_error(lost, 503)
    assert "could not confirm whether the change was made" in lost.json()["error"]["message"]

    live = _live_keys_of(world, partner)
    audited = {detail.get("key_id") for detail in _audited(world, "api_key_create")}
    assert len(live) == 1
    assert live[0] in audited, "a live key nobody audited issuing"
    # and the admin finds it in the list, to revoke it or keep it
    listed = call_api(
        "GET",
        "/admin/api-keys",
        headers=admin["headers"],
        query=f"owner_id={partner}",
        source_ip=ADMIN_IP,
    )
    assert live[0] in {key["key_id"] for key in listed.json()["keys"]}, listed.body


def test_a_rotation_whose_commit_answer_was_lost_leaves_an_unaudited_successor(
    world, admin, commit_cutter
):
    """An admin rotates a partner's key; the rotation commits (successor inserted, old
    key cut to its 7-day grace) but the COMMIT's answer is lost: 503. No
    `api_key_rotate` row is written, so the audit log shows neither the live successor
    nor why the old key now expires in a week; the retry is refused 409 naming a
    successor whose secret nobody ever received.

    Cause: functions/api/admin/keys.py::rotate_key audits after rotate_api_key
    returned; a COMMIT whose outcome is unknown is reported like one that wrote
    nothing (functions/shared/db/sessions.py::_session)."""
    partner = admin["partner"]
    old = admin_call(
        admin, "POST", "/admin/api-keys", {"owner_id": str(partner), "scopes": ["recalls:read"]}
    ).json()
    commit_cutter.arm(b"rotated_from")

    lost = admin_call(admin, "POST", f"/admin/api-keys/{old['key_id']}/rotate")
    assert commit_cutter.cut == 1, "the proxy cut no COMMIT"
    _is_api_error(lost, 503)

    successors = world.query(
        "SELECT key_id FROM api_keys WHERE rotated_from = %s", (old["key_id"],)
    )
    audited = {detail.get("key_id") for detail in _audited(world, "api_key_rotate")}
    assert [s for (s,) in successors if s not in audited] == [], (
        "a live successor key with no api_key_rotate audit row"
    )


# --- /admin/blocks ---------------------------------------------------------------------


def test_unblocking_an_address_that_is_not_blocked_is_404_even_while_waf_fails(
    world, admin, faulty_aws, monkeypatch
):
    """An admin unblocks an address that is not blocked while the WAF API errors. The
    registry (DynamoDB) answers fine and says the address is not blocked: the answer
    should be the documented 404. Instead it is 503 ("nothing was changed ... repeating
    the request is safe"), and every repeat is 503 for as long as WAF errors, although
    the request needs nothing from WAF.

    Cause: functions/shared/blocks.py::unblock runs sync_ip_sets for a request that
    found nothing to release, outside _sync_after_change, so a WAF error escapes to
    functions/api/admin/blocks.py::_run as a 503."""
    from tests.support.waf import create_resources

    create_resources(monkeypatch)
    faulty_aws.rule = lambda target, body: FAIL if target.startswith("AWSWAF_") else PASS

    response = admin_call(admin, "DELETE", "/admin/blocks/203.0.113.77")
    assert faulty_aws.disturbed(FAIL), "no WAF call was failed"
    _is_api_error(response, 404)


def test_a_block_whose_registry_answer_was_lost_reports_no_block_it_replaced(
    world, admin, faulty_aws, monkeypatch
):
    """An admin blocks an address nobody had blocked. DynamoDB applies the registry
    write but its answer is lost; botocore's retry of the conditional PutItem then
    meets the row the first attempt wrote and is refused, the block is decided again
    on that row, and the 201 answer lists the request's own block under `replaced`:
    "the live blocks it replaced, as they were". The operator is told the address was
    already blocked (by whom, until when: itself), which it was not.

    Cause: functions/shared/blocks.py::BlockRegistry.claim cannot tell its own earlier
    attempt from another writer (unlike claim_message_id's token), and block() builds
    `replaced` from the re-read row (functions/shared/blocks.py::block)."""
    from functions.shared import names
    from tests.support.waf import create_resources

    create_resources(monkeypatch)
    faulty_aws.rule = first_only(
        lambda target, body: (
            target.endswith(".PutItem") and names.BLOCK_REGISTRY_TABLE.encode() in body
        ),
        DROP_ANSWER,
    )

    response = admin_call(
        admin, "POST", "/admin/blocks", {"targets": ["203.0.113.7"], "reason": "scanner"}
    )
    assert faulty_aws.disturbed(DROP_ANSWER), "the proxy lost no registry answer"
    assert response.status == 201, response.body
    answer = response.json()
    assert (answer["changed"][0]["ip"], answer["changed"][0]["offences"]) == ("203.0.113.7/32", 1)
    assert answer["replaced"] == [], f"a block that was never there: {answer['replaced']}"


def test_a_block_whose_registry_answers_and_read_back_are_lost_says_it_may_have_taken_effect(
    world, admin, faulty_aws, monkeypatch
):
    """The registry applies the block, every answer to it is lost, and so is every read
    after it. Nobody knows whether the address is blocked (the sweep enforces it if it
    landed): the 503 must say the change may have taken effect, not that nothing changed."""
    from functions.shared import names
    from tests.support.waf import create_resources

    create_resources(monkeypatch)
    put_seen: list[bool] = []

    def rule(target: str, body: bytes) -> str:
        if target.endswith(".PutItem") and names.BLOCK_REGISTRY_TABLE.encode() in body:
            put_seen.append(True)
            return DROP_ANSWER
        return FAIL if put_seen and target.endswith(".Scan") else PASS

    faulty_aws.rule = rule
    response = admin_call(
        admin, "POST", "/admin/blocks", {"targets": ["203.0.113.9"], "reason": "scanner"}
    )
    assert faulty_aws.disturbed(DROP_ANSWER), "the proxy lost no registry answer"
    assert faulty_aws.disturbed(FAIL), "no registry read after the write was failed"
    _is_api_error(response, 503)
    message = response.json()["error"]["message"]
    assert "may have taken effect" in message, message
