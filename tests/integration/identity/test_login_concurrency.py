"""Sign-in guesses arriving all at once: the lockout holds however many come together.

The counters live in DynamoDB so that they hold across Lambda instances; these
tests send a burst of simultaneous sign-ins and count how many passwords were
actually checked (a 401 or a 200; a 429 was refused before any check). Against
the moto server, which applies each call atomically as DynamoDB does
(ops/moto.py::OneCallAtATime), and real PostgreSQL.

Hashing uses the production scrypt cost, so each check takes tens of
milliseconds, as it does deployed: the gap between reading the counters and
recording a failure that concurrent requests used to slip through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.api import call_api
from tests.support.logs import json_log_lines

REPO_ROOT = Path(__file__).resolve().parents[3]
ACCOUNT_THRESHOLD = 5
BURST = 20


@pytest.fixture
def production_scrypt(world, monkeypatch):
    from functions.shared.settings import get_settings

    monkeypatch.setenv("SCRYPT_N", str(2**14))
    monkeypatch.setenv("SCRYPT_R", "8")
    get_settings.cache_clear()
    assert get_settings().login_account_failure_threshold == ACCOUNT_THRESHOLD
    return world


def attempt(email: str, password: str, source_ip: str) -> int:
    """One sign-in through the logic the route calls; the HTTP status it ends in."""
    from functions.api.identity.sign_in import LoginRequest, sign_in
    from functions.shared.errors import DomainError

    try:
        sign_in(LoginRequest(email=email, password=password), source_ip)
    except DomainError as error:
        return error.status
    return 200


def burst(requests: list[tuple[str, str, str]]) -> list[int]:
    """Send every request at the same moment, one thread each.

    Threads call the sign-in logic, not the Lambda handler: the Powertools resolver
    keeps the current event on the app, one per process, as a Lambda instance serves
    one request at a time. Below it nothing serialises concurrent sign-ins in a
    process (the AWS client and the connection pool are shared, scrypt releases the
    GIL), so the threads race the way separate instances do.
    """
    start = threading.Barrier(len(requests))

    def send(request: tuple[str, str, str]) -> int:
        start.wait()
        return attempt(*request)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


@pytest.fixture
def warmed(production_scrypt):
    # Clients, pools and the dummy hash are made before the burst, as in a warm instance.
    assert attempt("warm-up@example.com", "wrong", "192.0.2.200") == 401
    yield production_scrypt
    from functions.shared.observability import metrics

    # What the burst counted is not flushed by a handler here; no later test may read it.
    metrics.clear_metrics()


def test_simultaneous_guesses_at_one_account_check_at_most_the_threshold(warmed, caplog):
    # Given an account
    warmed.create_user("parent@example.com", "correct horse")
    # When 20 wrong guesses arrive at once from 20 addresses
    statuses = burst(
        [("parent@example.com", f"guess-{n}", f"198.51.100.{n + 1}") for n in range(BURST)]
    )
    # Then only the threshold's worth of passwords was checked; the rest were refused unchecked
    counted = Counter(statuses)
    assert counted[401] == ACCOUNT_THRESHOLD, counted
    assert counted[429] == BURST - ACCOUNT_THRESHOLD, counted
    # And the right password, sent once the threshold is spent, is refused too
    locked = attempt("parent@example.com", "correct horse", "203.0.113.50")
    assert locked == 429
    # And each answer was audited as before: a wrong password or a refusal under lock
    reasons = Counter(
        line["reason"]
        for line in json_log_lines(caplog)
        if line.get("auth_event") == "sign_in_failed"
        and line.get("source_ip", "").startswith(("198.51.100.", "203.0.113."))
    )
    # (the refusals: the burst's, and the right password's after it)
    assert reasons == {
        "wrong_password": ACCOUNT_THRESHOLD,
        "locked_out": BURST - ACCOUNT_THRESHOLD + 1,
    }


def test_simultaneous_guesses_from_one_address_check_at_most_its_threshold(warmed, monkeypatch):
    from functions.shared.settings import get_settings

    # Given an IP threshold of 5, and one address guessing at 20 different accounts at once
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "5")
    get_settings.cache_clear()
    statuses = burst([(f"user{n}@example.com", "guess", "203.0.113.66") for n in range(BURST)])
    # Then five passwords were checked and the rest refused
    assert Counter(statuses) == {401: 5, 429: BURST - 5}


def test_the_right_password_in_a_burst_is_checked_within_the_threshold(warmed):
    # Given an account, and a burst in which the owner's correct password is one request
    warmed.create_user("parent@example.com", "correct horse")
    requests = [("parent@example.com", f"guess-{n}", f"198.51.100.{n + 1}") for n in range(BURST)]
    requests[BURST // 2] = ("parent@example.com", "correct horse", "203.0.113.50")
    statuses = burst(requests)
    # Then it either got its token (a success clears the account's count, as it always
    # has) or was refused unchecked; every password checked before a success fits the
    # threshold, and none after it can exceed a fresh threshold.
    owner = statuses[BURST // 2]
    guesses = Counter(status for n, status in enumerate(statuses) if n != BURST // 2)
    assert owner in (200, 429)
    if owner == 429:
        assert guesses[401] == ACCOUNT_THRESHOLD, guesses
    else:
        assert guesses[401] <= 2 * ACCOUNT_THRESHOLD - 1, guesses


# Each child process is one "instance": it imports the handler, warms up, says so,
# and sends its sign-in through the Lambda handler when the parent says go.
CHILD = """
import json, sys
from tests.support.api import call_api
from functions.api.identity import sign_in, store
from functions.shared.identity import aws, lockout, passwords
aws.dynamodb()
passwords.dummy_hash()
email, password, source_ip = json.loads(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
response = call_api("POST", "/auth/login", json_body={"email": email, "password": password},
                    source_ip=source_ip)
print(json.dumps([response.status, response.headers.get("Retry-After")]), flush=True)
"""


def test_simultaneous_guesses_from_separate_processes_are_counted(production_scrypt, monkeypatch):
    from functions.shared.settings import get_settings

    # Given an account with a threshold of 3, and 8 processes, each an instance with one guess
    monkeypatch.setenv("LOGIN_ACCOUNT_FAILURE_THRESHOLD", "3")
    get_settings.cache_clear()
    production_scrypt.create_user("parent@example.com", "correct horse")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                json.dumps(["parent@example.com", f"g{n}", f"2001:db8:{n}::1"]),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        # When all of them send their guess at once
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        answers = [
            json.loads(child.communicate(timeout=30)[0].strip().splitlines()[-1])
            for child in children
        ]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    # Then three passwords were checked, and the other five were told when to come back
    statuses = Counter(status for status, _ in answers)
    assert statuses == {401: 3, 429: 5}, answers
    assert all(int(retry) >= 1 for status, retry in answers if status == 429), answers
    # And the account stays locked for its owner, whatever address they come from
    assert (
        call_api(
            "POST",
            "/auth/login",
            # pragma: allowlist nextline secret
            json_body={"email": "parent@example.com", "password": "correct horse"},
            source_ip="198.51.100.77",
        ).status
        == 429
    )
