"""API keys: format, hash-only storage, and every way a presented key is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from functions.shared.identity.api_keys import (
    ApiKeyRecord,
    ApiKeyRejected,
    check_api_key,
    generate_api_key,
    hash_secret,
    parse_api_key,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record_for(new_key, **overrides):
    values = {
        "key_id": new_key.key_id,
        "owner_id": uuid.uuid4(),
        "secret_hash": new_key.secret_hash,
        "scopes": frozenset({"recalls:read"}),
        "rate_limit_per_minute": 60,
        "expires_at": None,
        "revoked_at": None,
        "owner_role": "user",
    }
    values.update(overrides)
    return ApiKeyRecord(**values)


def test_generated_key_has_the_documented_format_and_parses_back():
    # When a key is generated
    new_key = generate_api_key()
    # Then it reads bs_<key-id>_<secret>; parsing recovers the id and a secret whose hash is stored
    assert new_key.plaintext.startswith(f"bs_{new_key.key_id}_")
    parsed = parse_api_key(new_key.plaintext)
    assert parsed is not None
    assert parsed.key_id == new_key.key_id
    assert hash_secret(parsed.secret) == new_key.secret_hash
    # And neither the repr nor the stored hash contains the secret
    assert parsed.secret not in repr(new_key)
    assert parsed.secret not in repr(parsed)
    assert parsed.secret.encode() not in new_key.secret_hash


def test_keys_are_unique():
    assert len({generate_api_key().plaintext for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "bs_",
        "bs_0123456789abcdef_",
        "xx_0123456789abcdef_" + "a" * 43,
        "bs_0123456789ABCDEF_" + "a" * 43,  # key ids are lower-case hex
        "bs_../../etc/passwd_" + "a" * 43,
        "bs_0123456789abcdef_" + "a" * 10,  # secret too short
        "bs_0123456789abcdef_" + "a" * 40 + "'; DROP TABLE api_keys;--",
    ],
)
def test_malformed_keys_are_refused_before_any_lookup(raw):
    looked_up: list[str] = []
    # When a malformed key is presented
    with pytest.raises(ApiKeyRejected) as refused:
        check_api_key(raw, lambda key_id: looked_up.append(key_id), now=NOW)
    # Then it is refused as malformed and the database is never asked
    assert refused.value.reason == "malformed"
    assert looked_up == []


def test_a_live_key_is_accepted():
    new_key = generate_api_key()
    record = record_for(new_key)
    assert check_api_key(new_key.plaintext, {new_key.key_id: record}.get, now=NOW) == record


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"revoked_at": NOW - timedelta(seconds=1)}, "revoked"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "expired"),
        ({"expires_at": NOW}, "expired"),
    ],
)
def test_revoked_and_expired_keys_are_refused(overrides, reason):
    new_key = generate_api_key()
    record = record_for(new_key, **overrides)
    with pytest.raises(ApiKeyRejected) as refused:
        check_api_key(new_key.plaintext, {new_key.key_id: record}.get, now=NOW)
    assert refused.value.reason == reason
    assert refused.value.key_id == new_key.key_id


def test_key_in_rotation_grace_period_still_works():
    # Given a rotated key whose old version expires in the future
    new_key = generate_api_key()
    record = record_for(new_key, expires_at=NOW + timedelta(days=7))
    # Then it is still accepted
    assert check_api_key(new_key.plaintext, {new_key.key_id: record}.get, now=NOW) == record


def test_right_id_with_wrong_secret_is_refused():
    # Given a stored key and a presented key with the same id but another secret
    stored = generate_api_key()
    other = generate_api_key()
    forged = f"bs_{stored.key_id}_{parse_api_key(other.plaintext).secret}"  # type: ignore[union-attr]
    with pytest.raises(ApiKeyRejected) as refused:
        check_api_key(forged, {stored.key_id: record_for(stored)}.get, now=NOW)
    assert refused.value.reason == "wrong_secret"


def test_unknown_key_id_is_refused():
    new_key = generate_api_key()
    with pytest.raises(ApiKeyRejected) as refused:
        check_api_key(new_key.plaintext, lambda key_id: None, now=NOW)
    assert refused.value.reason == "unknown_key"


def test_a_key_without_a_known_chain_counts_alone_against_its_own_limit():
    record = record_for(generate_api_key(), rate_limit_per_minute=30)
    assert record.rate_limit_id == record.key_id
    assert record.applied_rate_limit_per_minute == 30


def test_a_key_in_a_rotation_chain_counts_as_the_chain_under_the_smaller_limit():
    # Given a successor whose chain started at another key, with a lower live limit
    record = record_for(
        generate_api_key(),
        rate_limit_per_minute=30,
        chain_first_key_id="0123456789abcdef",
        chain_rate_limit_per_minute=10,
    )
    # Then it counts against the first key, under the chain's limit
    assert record.rate_limit_id == "0123456789abcdef"
    assert record.applied_rate_limit_per_minute == 10
    # And a chain limit above the key's own never raises the key's
    capped = record_for(generate_api_key(), rate_limit_per_minute=5, chain_rate_limit_per_minute=50)
    assert capped.applied_rate_limit_per_minute == 5
