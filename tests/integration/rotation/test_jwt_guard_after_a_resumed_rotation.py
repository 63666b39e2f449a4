"""The JWT guard (PreviousKeyStillLive) counts from the current key's promotion,
which finishSecret dates with a tag: a rotation resumed long after its createSecret
must not open the guard for the next one."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from functions.shared.identity.jwt_keys import JwtKeyStore, generate_jwt_secret_value
from functions.shared.identity.secret_versions import SecretVersionsCache
from functions.shared.identity.tokens import issue_access_token, verify_access_token
from functions.shared.inventory import spec
from functions.shared.rotation.driver import (
    DriverContext,
    LocalRotationDriver,
    RotationFailed,
    seed_secret,
)
from functions.shared.rotation.store import SecretStore

JWT = "jwt-signing-key"


def _jwt_keys() -> JwtKeyStore:
    return JwtKeyStore(spec(JWT).secret_name, cache=SecretVersionsCache())


def test_a_resumed_jwt_rotation_does_not_open_the_guard_for_the_next_one(
    store: SecretStore, driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PreviousKeyStillLive refuses a routine rotation while AWSCURRENT is younger than
    the token lifetime + leeway + cache, because the AWSPREVIOUS key signed until
    AWSCURRENT was promoted. It dated AWSCURRENT by its CreatedDate, i.e. when
    createSecret stored it. A rotation that stopped after createSecret (Ctrl-C, a
    failed step, Secrets Manager's retry on a later day) and was resumed later is
    promoted long after that date: the key it replaced was signing tokens until a
    moment ago, yet the very next routine rotation (`babyshield rotate --all`, a
    scheduled one) was let through at once and dropped that key. Users signed in just
    before the resume were logged out (401) although their tokens are unexpired, exactly
    what the guard exists to prevent. finishSecret now tags the promotion's time, and
    the guard counts from the later of the two.

    Window here: token lifetime 4 s, no leeway, no cache, + 1 s slack = 5 s."""
    from functions.rotate_jwt.handler import lambda_handler

    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "4")
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "0")
    monkeypatch.setenv("SECRET_CACHE_SECONDS", "0")
    from functions.shared.settings import get_settings

    get_settings.cache_clear()
    seed_secret(store, spec(JWT), json.loads(generate_jwt_secret_value("ES256")))
    driver.rotate(JWT)  # AWSPREVIOUS now holds a real key
    time.sleep(5.5)  # the current key is past the window: a routine rotation may start

    # A routine rotation stops right after createSecret (its process is killed).
    arn = store.describe(spec(JWT).secret_name).arn
    token = str(uuid.uuid4())
    lambda_handler(
        {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": token},
        DriverContext(function_name="rotate_jwt"),
    )
    time.sleep(5.5)  # it stays pending a while; the old current key keeps signing

    signed_before_resume = issue_access_token(uuid.uuid4(), "user", keys=_jwt_keys()).token
    driver.rotate(JWT, resume=True)  # promoted now: the signing key becomes AWSPREVIOUS
    verify_access_token(signed_before_resume, keys=_jwt_keys())  # the overlap works once

    refused_at: str | None
    try:
        driver.rotate(JWT)  # the next routine rotation, a moment later
    except RotationFailed as failed:
        refused_at = failed.step
    else:
        refused_at = None
    assert refused_at == "createSecret", "the next routine rotation was let through"
    verify_access_token(signed_before_resume, keys=_jwt_keys())
