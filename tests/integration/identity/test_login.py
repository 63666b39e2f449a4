"""POST /auth/login against real PostgreSQL: tokens, generic failures, lockout."""

from __future__ import annotations

import pytest

from functions.shared import names
from functions.shared.identity.tokens import verify_access_token
from tests.support.api import call_api
from tests.support.api import sign_in as login
from tests.support.logs import emf_metrics, json_log_lines


def test_correct_credentials_return_a_working_access_token(world):
    # Given a user
    user_id = world.create_user("Parent@Example.com", "correct horse")
    # When they sign in (email case does not matter)
    response = login("parent@example.COM", "correct horse")
    # Then they get a bearer token for 15 minutes that names them
    assert response.status == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    claims = verify_access_token(body["access_token"])
    assert claims.subject == user_id
    assert claims.role == "user"
    # And the token opens their own routes
    me = call_api("GET", "/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status == 200
    assert me.json()["user_id"] == str(user_id)


def test_wrong_password_and_unknown_email_get_the_same_answer(world):
    world.create_user("parent@example.com", "correct horse")
    wrong_password = login("parent@example.com", "wrong")
    unknown_email = login("nobody@example.com", "wrong")
    assert wrong_password.status == unknown_email.status == 401
    assert wrong_password.json()["error"]["message"] == unknown_email.json()["error"]["message"]
    assert wrong_password.json()["error"]["code"] == unknown_email.json()["error"]["code"]


def test_failed_sign_in_is_audited_and_counted_without_the_email(world, caplog, capsys):
    world.create_user("parent@example.com", "correct horse")
    login("parent@example.com", "hunter2-wrong", source_ip="203.0.113.5")
    lines = [line for line in json_log_lines(caplog) if line.get("audit")]
    # The line the WAF responder counts: auth_event sign_in_failed with the source IP
    failed = [line for line in lines if line.get("auth_event") == "sign_in_failed"]
    assert failed
    assert failed[-1]["source_ip"] == "203.0.113.5"
    assert failed[-1]["reason"] == "wrong_password"
    everything = str(json_log_lines(caplog)) + capsys.readouterr().out
    assert "parent@example.com" not in everything
    assert "hunter2-wrong" not in everything
    assert "FailedSignIns" in everything


def test_account_is_locked_after_repeated_failures_even_with_the_right_password(world):
    world.create_user("parent@example.com", "correct horse")
    for _ in range(5):
        assert login("parent@example.com", "wrong").status == 401
    # The right password no longer helps while the lock holds
    locked = login("parent@example.com", "correct horse")
    assert locked.status == 429
    assert int(locked.header("Retry-After") or "0") > 0
    # And the answer does not reveal whether the password was right
    assert "password" not in locked.body.lower()


def test_a_locked_account_refusal_is_counted_apart_from_failed_sign_ins(world, capsys):
    # Given an account locked by five wrong guesses from one address
    world.create_user("parent@example.com", "correct horse")
    for _ in range(5):
        login("parent@example.com", "wrong", source_ip="198.51.100.7")
    guesses = emf_metrics(capsys.readouterr().out)
    assert guesses[names.METRIC_FAILED_SIGNINS] == 5
    # When its owner signs in with the right password from the office
    assert login("parent@example.com", "correct horse", source_ip="203.0.113.99").status == 429
    # Then the refusal is no failed sign-in: the alarm that starts the WAF responder
    # counts only what the responder counts as evidence against an address
    refusal = emf_metrics(capsys.readouterr().out)
    assert names.METRIC_FAILED_SIGNINS not in refusal
    assert refusal[names.METRIC_SIGN_INS_REFUSED_LOCKED] == 1


def test_lockout_holds_from_another_source_ip(world):
    world.create_user("parent@example.com", "correct horse")
    for index in range(5):
        login("parent@example.com", "wrong", source_ip=f"198.51.100.{index + 1}")
    assert login("parent@example.com", "correct horse", source_ip="203.0.113.99").status == 429


def test_unknown_email_is_locked_the_same_way(world):
    # Locks are per email whether or not an account exists: no enumeration through 429s.
    for _ in range(5):
        login("ghost@example.com", "wrong")
    assert login("ghost@example.com", "wrong").status == 429


def test_success_resets_the_account_counter(world):
    world.create_user("parent@example.com", "correct horse")
    for _ in range(4):
        login("parent@example.com", "wrong")
    assert login("parent@example.com", "correct horse").status == 200
    for _ in range(4):
        assert login("parent@example.com", "wrong").status == 401


@pytest.mark.parametrize(
    "body",
    [
        {"email": "parent@example.com"},
        {"password": "x"},
        {"email": "not-an-email", "password": "x"},
        {"email": "a@b.c", "password": ""},
        {"email": "a@b.c", "password": "x" * 1025},
        {"email": "a@b.c", "password": "x", "role": "admin"},
    ],
)
def test_malformed_sign_in_is_422_without_echo(world, body):
    response = call_api("POST", "/auth/login", json_body=body)
    assert response.status == 422
    assert "parent@example.com" not in response.body


def test_database_down_is_503_not_500(world, monkeypatch):
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    monkeypatch.setenv(
        "DATABASE_READONLY_URL", "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=1"
    )
    close_pools()
    get_settings.cache_clear()
    response = login("parent@example.com", "whatever")
    assert response.status == 503
    close_pools()


def test_success_is_audited_with_user_id_and_key_version(world, caplog):
    user_id = world.create_user("parent@example.com", "correct horse")
    login("parent@example.com", "correct horse")
    succeeded = [
        line for line in json_log_lines(caplog) if line.get("auth_event") == "sign_in_succeeded"
    ]
    assert succeeded
    assert succeeded[-1]["user_id"] == str(user_id)
    assert succeeded[-1]["kid"]
    assert "correct horse" not in str(json_log_lines(caplog))


def test_hash_made_with_an_older_cost_is_upgraded_on_sign_in(world, monkeypatch):
    from functions.shared.settings import get_settings

    # Given a user whose hash was made with a lower cost than today's setting
    world.create_user("parent@example.com", "correct horse")
    monkeypatch.setenv("SCRYPT_N", "32")
    get_settings.cache_clear()
    # When they sign in
    assert login("parent@example.com", "correct horse").status == 200
    # Then the stored hash carries the new cost, and the password still works
    stored = world.query("SELECT password_hash FROM users")[0][0]
    assert stored.startswith("scrypt$32$")
    assert login("parent@example.com", "correct horse").status == 200


def test_lockout_store_down_fails_closed_with_503(world, monkeypatch):
    from functions.shared.settings import get_settings

    world.create_user("parent@example.com", "correct horse")
    monkeypatch.setenv("RATE_LIMIT_TABLE", "no-such-table")
    get_settings.cache_clear()
    response = login("parent@example.com", "correct horse")
    assert response.status == 503
    assert "access_token" not in response.body


def test_starting_a_lockout_is_counted(world, capsys):
    for _ in range(5):
        login("parent@example.com", "wrong")
    assert "AccountLockouts" in capsys.readouterr().out


def test_an_ipv6_source_rotating_inside_its_64_is_counted_once(world, monkeypatch):
    from functions.shared.settings import get_settings

    # Given an IP threshold of 3, and a source that takes a new address in its /64 each time
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "3")
    get_settings.cache_clear()
    for index in range(3):
        response = login(
            f"user{index}@example.com", "wrong", source_ip=f"2001:db8:5:6::{index + 1}"
        )
        assert response.status == 401
    # Then a fourth address in that /64 is refused, for an email it never tried
    assert login("fresh@example.com", "wrong", source_ip="2001:db8:5:6:ab::9").status == 429
    # While the next /64 is counted apart
    assert login("fresh@example.com", "wrong", source_ip="2001:db8:5:7::1").status == 401


def test_a_sign_in_that_checked_no_password_spends_no_attempt(world, monkeypatch):
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    # Given a user locked after 2 failures, and the database down for 3 sign-ins
    world.create_user("parent@example.com", "correct horse")
    monkeypatch.setenv("LOGIN_ACCOUNT_FAILURE_THRESHOLD", "2")
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv(
        "DATABASE_READONLY_URL", "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=1"
    )
    close_pools()
    get_settings.cache_clear()
    for _ in range(3):
        assert login("parent@example.com", "wrong").status == 503
    # When the database is back
    monkeypatch.setenv("DATABASE_READONLY_URL", world.db.tier("readonly"))
    close_pools()
    get_settings.cache_clear()
    # Then none of those attempts counted against the account
    assert login("parent@example.com", "correct horse").status == 200


class _LockoutClock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lockout_clock(monkeypatch):
    """The clock of every SignInLockout a request builds (its keyword default)."""
    import time

    from functions.shared.identity import lockout

    clock = _LockoutClock(time.time())
    monkeypatch.setitem(lockout.SignInLockout.__init__.__kwdefaults__, "clock", clock)
    return clock


def test_past_the_longest_lock_guesses_still_go_one_at_a_time(world, lockout_clock):
    """After the first burst, one checked guess per lock, each lock longer, up to the
    cap; and after the capped lock still one guess, not a fresh burst (the record once
    expired with its capped lock, and the guess after it started over)."""
    from functions.shared.settings import get_settings

    settings = get_settings()
    world.create_user("victim@example.com", "the-right-password")

    def guess() -> int:
        return login("victim@example.com", "a-wrong-guess", "198.51.100.30").status

    threshold = settings.login_account_failure_threshold
    assert [guess() for _ in range(threshold + 1)] == [401] * threshold + [429]
    step = 0
    while True:
        lock = min(
            settings.login_lockout_max_seconds,
            settings.login_lockout_base_seconds * 2**step,
        )
        lockout_clock.now += lock
        if lock == settings.login_lockout_max_seconds and step > 0:
            break
        assert [guess(), guess()] == [401, 429], f"after a {lock}s lock"
        step += 1
    assert [guess(), guess()] == [401, 429]
