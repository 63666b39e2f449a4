"""Audit details carry no credential: what a caller pasted where an id goes is cut out,
and nothing else is."""

from __future__ import annotations

import pytest

from functions.api.identity.audit import REDACTED, _without_credentials

KEY = "bs_0123456789abcdef_" + "k" * 43  # pragma: allowlist secret
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"  # pragma: allowlist secret
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0" * 4  # pragma: allowlist secret


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        (f"/admin/api-keys/{KEY}/revoke", f"/admin/api-keys/{REDACTED}/revoke"),
        (f"/admin/users/{TOKEN}", f"/admin/users/{REDACTED}"),
        (f"/webhooks/{WEBHOOK_SECRET}", f"/webhooks/{REDACTED}"),
        (f"Bearer {TOKEN}", f"Bearer {REDACTED}"),
    ],
    ids=["api key in a path", "token in a path", "webhook secret in a path", "a header"],
)
def test_a_credential_shape_is_cut_out_of_a_detail(sent: str, written: str) -> None:
    assert _without_credentials({"path": sent}) == {"path": written}


@pytest.mark.parametrize(
    "ordinary",
    [
        "/admin/api-keys/0123456789abcdef/revoke",  # pragma: allowlist secret
        "/recalls",
        "monkeyJungle.v1.2",
        "/admin/blocks/203.0.113.7/32",
    ],
)
def test_an_ordinary_detail_is_written_as_it_is(ordinary: str) -> None:
    assert _without_credentials({"path": ordinary, "limit": 5}) == {"path": ordinary, "limit": 5}


def test_a_sign_in_record_never_shows_its_password_hash():
    """A LoginRecord printed by a debugging line or a traceback's locals shows who, not
    the hash an offline guesser would need."""
    import uuid

    from functions.api.identity.store import LoginRecord

    hashed = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA"  # pragma: allowlist secret
    record = LoginRecord(user_id=uuid.uuid4(), password_hash=hashed, role="user")
    assert hashed not in repr(record)
    assert "argon2" not in str(record)
