"""New database passwords (JWT keys and webhook secrets come from functions.shared.identity)."""

from __future__ import annotations

import secrets
import string

# Letters and digits only: no character that needs escaping in a libpq key=value
# string or a URL (@ : / ? # % ' " \ and space all break one or the other), so a
# password can be pasted into any connection string as it is. 32 characters of
# 62 symbols is about 190 bits.
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    while True:
        candidate = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))
        # Some policies demand every class; a rare all-letter draw is simply redrawn.
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate
