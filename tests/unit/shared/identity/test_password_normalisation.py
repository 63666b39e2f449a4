"""Passwords are NFKC-normalised before hashing (NIST SP 800-63B 5.1.1.2): one password
whatever the keyboard, with hashes made before that still verifying."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest

from functions.shared.identity import passwords
from functions.shared.identity.passwords import (
    MAX_PASSWORD_CHARS,
    MAX_PASSWORD_INPUT_CHARS,
    ScryptParams,
    check_password,
    hash_password,
    verify_password,
)

COMPOSED = "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"  # pragma: allowlist secret
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)
CHEAP = ScryptParams(n=16, r=1, p=1)


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    monkeypatch.setenv("SCRYPT_N", "16")
    monkeypatch.setenv("SCRYPT_R", "1")


@pytest.fixture
def scrypt_inputs(monkeypatch):
    """Every scrypt derivation's input (the real function still runs)."""
    inputs: list[bytes] = []
    real = hashlib.scrypt

    def recording(password, **kwargs):
        inputs.append(password)
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    return inputs


def hash_as_before_normalisation(password: str, params: ScryptParams = CHEAP) -> str:
    """A hash as hash_password made it before passwords were normalised: of the
    password as typed."""
    return passwords._encoded_hash(password, params)


@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        (COMPOSED, DECOMPOSED),
        (DECOMPOSED, COMPOSED),
        ("PIN 2024", "PIN \uff12\uff10\uff12\uff14"),  # full-width digits
        ("\ufb01refly", "firefly"),  # the "fi" ligature
        ("\u212bngstr\u00f6m", "\u00c5ngstro\u0308m"),  # Angstrom sign, o + diaeresis
    ],
    ids=["composed then decomposed", "decomposed then composed", "full-width", "ligature", "mix"],
)
def test_a_password_verifies_however_it_was_typed(registered, typed):
    # Given a password hashed as one keyboard typed it
    stored = hash_password(registered)
    # Then the same password typed on another verifies, and a different one does not
    assert verify_password(typed, stored)
    assert verify_password(registered, stored)
    assert not verify_password(typed + "!", stored)


def test_the_stored_hash_is_of_the_normalised_form():
    stored = hash_password(DECOMPOSED)
    # Matched in its normalised form: nothing to remake
    assert check_password(COMPOSED, stored) == passwords.PasswordCheck(matched=True)
    assert check_password(DECOMPOSED, stored) == passwords.PasswordCheck(matched=True)


def test_a_hash_made_from_the_password_as_typed_still_verifies_and_says_so():
    # Given a hash made before normalisation, from the decomposed password
    legacy = hash_as_before_normalisation(DECOMPOSED)
    # When its owner types it on the same keyboard
    check = check_password(DECOMPOSED, legacy)
    # Then it verifies, through the form as typed, which the sign-in remakes
    assert check.matched
    assert check.matched_unnormalised
    # And once remade from the normalised form, either keyboard's form verifies
    remade = hash_password(DECOMPOSED)
    assert check_password(COMPOSED, remade) == passwords.PasswordCheck(matched=True)
    assert check_password(DECOMPOSED, remade) == passwords.PasswordCheck(matched=True)


def test_a_legacy_hash_is_not_matched_by_a_wrong_password():
    legacy = hash_as_before_normalisation(DECOMPOSED)
    assert check_password(DECOMPOSED + "x", legacy) == passwords.NO_MATCH
    assert check_password("wrong", legacy) == passwords.NO_MATCH


def test_an_ascii_password_runs_scrypt_once_whatever_the_outcome(scrypt_inputs):
    stored = hash_password("correct horse battery staple")
    passwords.dummy_hash()  # built once per process
    for attempt, encoded in (
        ("correct horse battery staple", stored),  # right
        ("wrong horse battery staple", stored),  # wrong
        ("wrong horse battery staple", None),  # unknown account
        ("correct horse battery staple", hash_as_before_normalisation("other")),  # legacy
    ):
        scrypt_inputs.clear()
        check_password(attempt, encoded)
        assert len(scrypt_inputs) == 1, attempt


def test_a_password_normalisation_changes_costs_the_same_for_any_account(scrypt_inputs):
    """Tried as typed too after its normalised form failed: two derivations for a wrong
    password and for an unknown account alike, so the count tells nothing of the email."""
    stored = hash_password("something else")
    passwords.dummy_hash()
    scrypt_inputs.clear()
    assert not verify_password(DECOMPOSED, stored)
    wrong = len(scrypt_inputs)
    scrypt_inputs.clear()
    assert not verify_password(DECOMPOSED, None)
    assert wrong == len(scrypt_inputs) == 2
    # A match in the normalised form needs no second run
    right = hash_password(COMPOSED)
    scrypt_inputs.clear()
    assert verify_password(DECOMPOSED, right)
    assert len(scrypt_inputs) == 1


def test_a_password_longer_than_the_limit_once_normalised_is_refused(scrypt_inputs):
    # U+FDFA is one code point and 18 once normalised: 57 of them are 1026
    expanding = "\ufdfa" * 57
    assert len(unicodedata.normalize("NFKC", expanding)) > MAX_PASSWORD_CHARS
    assert passwords.exceeds_length_limit(expanding)
    with pytest.raises(ValueError, match="too long"):
        hash_password(expanding)
    # And a check of it fails, with scrypt given no more than the limit
    stored = hash_password("x" * MAX_PASSWORD_CHARS)
    scrypt_inputs.clear()
    assert not verify_password(expanding, stored)
    assert not verify_password("\ufdfa" * MAX_PASSWORD_INPUT_CHARS, stored)
    assert not verify_password("\ufdfa" * (MAX_PASSWORD_INPUT_CHARS + 1), stored)
    assert scrypt_inputs
    assert all(len(data.decode("utf-8")) <= MAX_PASSWORD_CHARS for data in scrypt_inputs)
    assert all(len(data) <= 4 * MAX_PASSWORD_CHARS for data in scrypt_inputs)


def test_a_prefix_of_an_over_long_normalised_password_is_not_the_password():
    # Given a stored password of exactly the limit
    stored = hash_password("x" * MAX_PASSWORD_CHARS)
    # Then a password whose normalised form starts with it, and runs on, does not verify
    assert not verify_password("x" * MAX_PASSWORD_CHARS + "\ufb01", stored)
    assert not verify_password("x" * (MAX_PASSWORD_CHARS - 1) + "\ufb01", stored)


def test_the_limit_counts_the_normalised_form_when_it_is_shorter():
    # 1024 characters once normalised, 2048 as a keyboard that decomposes them sends
    composed = "\u00e9" * MAX_PASSWORD_CHARS
    decomposed = "e\u0301" * MAX_PASSWORD_CHARS
    assert not passwords.exceeds_length_limit(decomposed)
    stored = hash_password(decomposed)
    assert verify_password(composed, stored)
    assert verify_password(decomposed, stored)
    # One character more, once normalised, is over
    with pytest.raises(ValueError, match="too long"):
        hash_password(decomposed + "e\u0301")
    assert passwords.exceeds_length_limit(composed + "\u00e9")


def test_the_input_bound_is_enough_for_the_longest_composition():
    """Four code points compose into one (U+1F82): the most a password within the limit
    can be as typed is four times the limit, the input bound."""
    longest = unicodedata.normalize("NFD", "\u1f82")
    assert len(longest) == 4
    typed = longest * MAX_PASSWORD_CHARS
    assert len(typed) == MAX_PASSWORD_INPUT_CHARS
    assert verify_password("\u1f82" * MAX_PASSWORD_CHARS, hash_password(typed))


@pytest.mark.parametrize("suffix", ["\x00", "\x00" * 3], ids=["one NUL", "three NULs"])
def test_nuls_appended_to_a_non_ascii_password_do_not_verify_by_either_form(suffix):
    """The form-as-typed fallback keeps the NUL refusal: HMAC pads a short key with NULs,
    so without it "password" + NULs would match the legacy hash of "password"."""
    legacy = hash_as_before_normalisation(DECOMPOSED)
    remade = hash_password(DECOMPOSED)
    for stored in (legacy, remade):
        assert not verify_password(DECOMPOSED + suffix, stored)
        assert not verify_password(COMPOSED + suffix, stored)
    assert verify_password(DECOMPOSED, legacy)
    assert verify_password(COMPOSED, remade)


def test_a_normalised_form_holding_a_nul_is_refused(monkeypatch):
    """No Unicode character normalises to NUL, but what is hashed is the normalised form:
    were one to (a later Unicode, another normaliser), "password" + it must not verify."""
    stored = hash_password("correct horse")
    monkeypatch.setattr(passwords, "normalise_password", lambda password: password + "\x00")
    assert not verify_password("correct horse", stored)
    with pytest.raises(ValueError, match="NUL"):
        hash_password("correct horse")


def test_no_character_normalises_to_nothing_or_to_a_nul():
    """What the NUL refusal rests on, checked against this Python's Unicode tables (a
    runtime upgrade brings new ones): a character normalising to nothing could be
    appended to a password unseen, one normalising to a NUL would be padding."""
    for code_point in range(0x110000):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        normalised = unicodedata.normalize("NFKC", chr(code_point))
        assert normalised, hex(code_point)
        assert code_point == 0 or "\x00" not in normalised, hex(code_point)
