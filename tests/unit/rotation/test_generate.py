"""New database passwords."""

from __future__ import annotations

import string
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from functions.shared.rotation.generate import generate_password


def test_passwords_survive_connection_strings_unescaped() -> None:
    """A password pasted into a URL or a libpq string must arrive unchanged."""
    for _ in range(200):
        password = generate_password()
        assert quote(password, safe="") == password
        parsed = conninfo_to_dict(make_conninfo("host=db", password=password))
        assert parsed["password"] == password


def test_passwords_are_long_mixed_and_different_every_time() -> None:
    passwords = {generate_password() for _ in range(100)}
    assert len(passwords) == 100
    for password in passwords:
        assert len(password) == 32
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.digits for c in password)
