"""The caller of the current request, as the routes see it.

The identity layer stores a `Caller` in the resolver context. Until it does, and only
when TEST_CALLER_IDENTITY=1 in local mode (ignored in AWS; off by default), the headers
`X-Test-User-Id` and `X-Test-User-Role` stand in for it so that the RLS-scoped routes
can be exercised end to end.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from functions.shared.caller import CALLER_CONTEXT_KEY, Caller, CallerRole
from functions.shared.errors import Unauthorized
from functions.shared.settings import get_settings

TEST_USER_HEADER = "x-test-user-id"
TEST_ROLE_HEADER = "x-test-user-role"
_ROLES: dict[str, CallerRole] = {"user": "user", "admin": "admin"}


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _test_caller(headers: dict[str, str] | None) -> Caller | None:
    raw_id = _header(headers, TEST_USER_HEADER)
    if raw_id is None:
        return None
    try:
        user_id = UUID(raw_id)
    except ValueError as exc:
        raise Unauthorized() from exc
    role = _ROLES.get(_header(headers, TEST_ROLE_HEADER) or "user")
    if role is None:
        raise Unauthorized()
    return Caller(user_id=user_id, role=role, kind="test")


def require_caller(app: Any) -> Caller:
    """The authenticated caller, or 401."""
    caller = app.context.get(CALLER_CONTEXT_KEY)
    if isinstance(caller, Caller):
        return caller
    if get_settings().test_callers:
        test_caller = _test_caller(app.current_event.headers)
        if test_caller is not None:
            return test_caller
    raise Unauthorized()
