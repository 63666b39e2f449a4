"""Which failed sign-ins count against an address: a password checked and wrong, or
a refusal of the address locked by its own failures. Not the refusal of an account
that someone's guesses locked: its owner, typing the right password from home,
gets that refusal too, and counting it let an attacker have the owner's address
blocked (five wrong guesses from anywhere lock the account).

The refusals come from the API handler; the wrong guesses before them are the
lockout and audit calls the handler makes for a wrong password (without a
database: no password check is needed to lock a key). Their log lines go into the
moto server's log group, and the real responder reads them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions.shared import names
from functions.waf_responder.events import alarm_state_change_event
from tests.support.logs import json_log_lines
from tests.support.waf import WafResources, ip_set_addresses, put_log_lines

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def sign_in_world(waf: WafResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sign-in lockout's table beside the responder's resources."""
    from functions.shared.settings import get_settings
    from tests.support.identity import create_identity_tables, reset_identity_caches

    monkeypatch.setenv("SCRYPT_N", "16")
    monkeypatch.setenv("SCRYPT_R", "1")
    get_settings.cache_clear()
    create_identity_tables()
    reset_identity_caches()
    yield
    reset_identity_caches()


def _wrong_guesses(email: str, source_ip: str, n: int) -> None:
    """What sign_in does for `n` wrong passwords: reserve, record the failure, audit."""
    from functions.api.identity.audit import audit
    from functions.shared.identity.lockout import SignInLockout, lockout_keys

    lockout = SignInLockout()
    for _ in range(n):
        lockout.record_failure(lockout.reserve(lockout_keys(email, source_ip)))
        audit("sign_in", "failure", reason=names.SIGN_IN_WRONG_PASSWORD, source_ip=source_ip)


def _covered(address: str, cidrs: list[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(cidr) for cidr in cidrs)


def _ship_sign_in_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [
        line
        for line in json_log_lines(caplog)
        if line.get("auth_event") == names.AUTH_EVENT_SIGN_IN_FAILED
    ]
    put_log_lines(names.API_LOG_GROUP, [json.dumps(line) for line in lines])
    return lines


def test_the_owner_of_an_account_someone_else_locked_is_not_blocked(
    sign_in_world: None, waf: WafResources, invoke: Invoke, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.api import sign_in

    attacker, owner, email = "198.51.100.66", "203.0.113.40", "parent@example.com"
    # Given an attacker whose wrong guesses locked an account
    _wrong_guesses(email, attacker, 5)
    # When its owner signs in three times (the test threshold) and is refused unchecked
    refused = [sign_in(email, "the right password", source_ip=owner).status for _ in range(3)]
    assert refused == [429] * 3
    lines = _ship_sign_in_lines(caplog)
    assert {line["reason"] for line in lines if line["source_ip"] == owner} == {
        names.SIGN_IN_ACCOUNT_LOCKED
    }
    # And the failed-sign-ins alarm fires
    result = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))

    # Then the attacker is blocked and the owner is not
    assert f"{attacker}/32" in result["blocked"]
    assert not _covered(owner, ip_set_addresses(waf, 4)), result


def test_an_address_locked_by_its_own_failures_still_counts_its_refusals(
    sign_in_world: None,
    waf: WafResources,
    invoke: Invoke,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The source lock is the address's own doing: its refusals are evidence, so an
    attacker cannot stay under the responder's threshold by hitting its own lock."""
    from functions.shared.settings import get_settings
    from tests.support.api import sign_in

    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "2")
    get_settings.cache_clear()
    attacker = "198.51.100.77"
    # Given an address that guessed at two accounts, locking itself, and kept going
    _wrong_guesses("user1@example.com", attacker, 1)
    _wrong_guesses("user2@example.com", attacker, 1)
    assert sign_in("user3@example.com", "guess", source_ip=attacker).status == 429
    lines = _ship_sign_in_lines(caplog)
    assert [line["reason"] for line in lines] == [
        names.SIGN_IN_WRONG_PASSWORD,
        names.SIGN_IN_WRONG_PASSWORD,
        names.SIGN_IN_SOURCE_LOCKED,
    ]
    # When the alarm fires, Then all three count (the test threshold is three)
    result = invoke(alarm_state_change_event(names.ALARM_FAILED_SIGNINS))
    assert f"{attacker}/32" in result["blocked"], result
