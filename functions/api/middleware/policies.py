"""Which credential a path needs: a table by path prefix, decided before routing.

- `/admin`, `/monitoring`: the admin chain (admin_chain.py);
- `/me`, `/auth/me`: a JWT access token (`Authorization: Bearer`);
- `/webhooks/`: a Standard Webhooks signature over the raw body;
- `/recalls`: public data; a presented API key or token is verified, and an API
  key is held to its own rate limit;
- everything else: public, credentials ignored (so `/health` never loads a crypto
  library).

A table rather than a decorator per route, so a new route under a protected
prefix cannot forget its check. authentication.py enforces it.
"""

from __future__ import annotations

from enum import StrEnum

from functions.api.middleware.admin_allowlist import is_admin_path
from functions.shared.settings import Settings


class Policy(StrEnum):
    PUBLIC = "public"
    OPTIONAL = "optional"
    USER = "user"
    ADMIN = "admin"
    WEBHOOK = "webhook"


PATH_POLICIES: tuple[tuple[str, Policy], ...] = (
    ("/webhooks", Policy.WEBHOOK),
    ("/me", Policy.USER),
    ("/auth/me", Policy.USER),
    ("/recalls", Policy.OPTIONAL),
)


_POLICY_PREFIXES = tuple(prefix for prefix, _ in PATH_POLICIES)


def policy_for(path: str, settings: Settings) -> Policy:
    if is_admin_path(path, settings.admin_path_prefixes):
        return Policy.ADMIN
    # One C-level check sends most public paths (/health, /auth/login) straight out.
    if path.startswith(_POLICY_PREFIXES):
        for prefix, policy in PATH_POLICIES:
            if path == prefix or path.startswith(prefix + "/"):
                return policy
    return Policy.PUBLIC
