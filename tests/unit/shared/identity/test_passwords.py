"""Password hashing: scrypt with stored parameters, constant cost for unknown accounts."""

from __future__ import annotations

import hashlib

import pytest

from functions.shared.identity import passwords
from functions.shared.identity.passwords import (
    ScryptParams,
    hash_password,
    needs_rehash,
    verify_password,
)
from functions.shared.settings import get_settings

CHEAP = ScryptParams(n=16, r=1, p=1)


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    monkeypatch.setenv("SCRYPT_N", "16")
    monkeypatch.setenv("SCRYPT_R", "1")


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Record every scrypt derivation's cost parameters (the real function still runs)."""
    calls: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def recording(password, *, salt, n, r, p, maxmem=0, dklen=64):
        calls.append((n, r, p))
        return real(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    return calls


def test_the_right_password_verifies_and_a_wrong_one_does_not():
    # Given a stored hash
    stored = hash_password("correct horse battery staple")
    # Then only the same password matches
    assert verify_password("correct horse battery staple", stored)
    assert not verify_password("correct horse battery stapl", stored)
    assert not verify_password("", stored)


def test_hash_records_scheme_and_cost_and_never_the_password():
    # When a password is hashed
    stored = hash_password("s3cret-pass", CHEAP)
    # Then the stored form names scrypt and its cost, and salts every hash
    assert stored.startswith("scrypt$16$1$1$")
    assert "s3cret-pass" not in stored
    assert hash_password("s3cret-pass", CHEAP) != stored


def test_production_default_cost_is_at_least_owasp_minimum(monkeypatch):
    # Given no cost settings in the environment
    monkeypatch.delenv("SCRYPT_N")
    monkeypatch.delenv("SCRYPT_R")
    # Then the configured cost is N=2^14, r=8, p=1 or stronger
    params = passwords.configured_params()
    assert params.n >= 2**14
    assert params.r >= 8
    assert params.p >= 1


def test_unknown_account_costs_one_full_derivation_like_a_wrong_password(scrypt_calls):
    # Given a real account's hash made with the configured cost
    stored = hash_password("right")
    passwords.dummy_hash()  # built once per process, before any sign-in is timed
    scrypt_calls.clear()
    # When a wrong password is checked, and then an unknown account (no hash)
    assert not verify_password("wrong", stored)
    assert not verify_password("wrong", None)
    # Then both paths ran exactly one derivation at the same cost
    assert scrypt_calls == [(16, 1, 1), (16, 1, 1)]


@pytest.mark.parametrize(
    "stored",
    [
        "not-a-hash",
        "bcrypt$2b$12$abc",
        "scrypt$1048577$8$1$c2FsdA==$" + "A" * 44,  # n not a power of two
        "scrypt$2097152$8$1$c2FsdA==$" + "A" * 44,  # n above the bound
        "scrypt$16$1$1$!!!$AAAA",  # not base64
    ],
)
def test_corrupt_or_hostile_hashes_never_verify(stored, scrypt_calls):
    # Given a stored value that is not a hash this code made
    # When any password is checked against it
    # Then it fails, after a normal-cost derivation (never one with the stored absurd cost)
    assert not verify_password("anything", stored)
    assert all(call == (16, 1, 1) for call in scrypt_calls)


def test_over_long_password_is_refused_even_if_its_prefix_matches():
    # Given a hash of a 1024-character password
    long_password = "x" * passwords.MAX_PASSWORD_CHARS
    stored = hash_password(long_password)
    # Then a longer password sharing that prefix does not verify
    assert not verify_password(long_password + "y", stored)
    assert verify_password(long_password, stored)


@pytest.mark.parametrize("suffix", ["\x00", "\x00" * 3], ids=["one NUL", "three NULs"])
def test_a_password_with_nuls_appended_is_not_the_password(suffix, scrypt_calls):
    """scrypt keys HMAC-SHA256 with the password, and HMAC pads a key under 64 bytes with
    NUL bytes: without a guard "correct horse" + NULs derives the very same hash. It
    fails after the same one derivation a wrong password costs."""
    stored = hash_password("correct horse")
    scrypt_calls.clear()
    assert not verify_password("correct horse" + suffix, stored)
    assert len(scrypt_calls) == 1
    assert verify_password("correct horse", stored)


def test_no_password_with_a_nul_is_ever_stored():
    with pytest.raises(ValueError, match="NUL"):
        hash_password("correct horse\x00")


def test_rehash_is_needed_when_cost_changes(monkeypatch):
    # Given a hash made with the current cost
    stored = hash_password("pw")
    assert not needs_rehash(stored)
    # When the configured cost rises
    monkeypatch.setenv("SCRYPT_N", "32")
    from functions.shared.settings import get_settings

    get_settings.cache_clear()
    # Then the old hash still verifies but is flagged for rehash
    assert verify_password("pw", stored)
    assert needs_rehash(stored)


def test_a_hash_stored_at_a_lower_cost_is_checked_with_the_configured_work(
    monkeypatch, scrypt_calls
):
    # Given a hash made before the cost was raised from n=16 to n=64
    stored = hash_password("s3cret-pass", CHEAP)
    monkeypatch.setenv("SCRYPT_N", "64")
    get_settings.cache_clear()
    scrypt_calls.clear()
    # When a wrong password is checked against it
    assert not verify_password("wrong", stored)
    # Then it costs the configured work (4 derivations at the stored cost), as an
    # unknown account's check against the dummy does
    assert scrypt_calls == [(16, 1, 1)] * 4
    scrypt_calls.clear()
    assert not verify_password("wrong", None)
    assert scrypt_calls[-1:] == [(64, 1, 1)]


def test_an_implausibly_cheap_stored_hash_costs_one_configured_derivation(
    monkeypatch, scrypt_calls
):
    # Given a hash at the lowest cost the parser accepts, far below any configured one
    stored = hash_password("s3cret-pass", ScryptParams(n=2, r=1, p=1))
    monkeypatch.setenv("SCRYPT_N", str(2**14))
    monkeypatch.setenv("SCRYPT_R", "8")
    get_settings.cache_clear()
    scrypt_calls.clear()
    # Then its check is padded by one derivation at the configured cost, not thousands
    assert not verify_password("wrong", stored)
    assert scrypt_calls == [(2, 1, 1), (2**14, 8, 1)]
