"""The login model's password limits: the hashing limit counts the NFKC form, and the
bound on the form as sent lets through every password within it."""

from __future__ import annotations

import unicodedata

import pytest
from pydantic import ValidationError

from functions.api.identity.sign_in import LoginRequest
from functions.shared.errors import problem_of
from functions.shared.identity.passwords import MAX_PASSWORD_CHARS, MAX_PASSWORD_INPUT_CHARS


def _refusal_of(password: str) -> str:
    with pytest.raises(ValidationError) as refused:
        LoginRequest.model_validate({"email": "parent@example.com", "password": password})
    (error,) = refused.value.errors()
    assert error["loc"] == ("password",)
    return str(error["type"])


def test_the_longest_composition_of_a_password_at_the_limit_is_accepted():
    # U+1F82 is four code points decomposed: the most one normalised character can be sent as
    typed = unicodedata.normalize("NFD", "\u1f82") * MAX_PASSWORD_CHARS
    assert len(typed) == MAX_PASSWORD_INPUT_CHARS
    login = LoginRequest.model_validate({"email": "parent@example.com", "password": typed})
    assert login.password == typed  # checked, not rewritten: the hashing normalises


@pytest.mark.parametrize(
    "password",
    [
        "\ufdfa" * 57,  # 57 as sent, 1026 once normalised
        "a" * (MAX_PASSWORD_CHARS + 1),
        "a" * (MAX_PASSWORD_INPUT_CHARS + 1),
    ],
    ids=["expands past the limit", "over the limit", "over the input bound"],
)
def test_a_password_over_the_limit_once_normalised_is_of_the_wrong_length(password):
    assert problem_of(_refusal_of(password)) == "of the wrong length"
