"""GET /admin/users: every user, for an admin (through the admin chain), never a hash."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.admin import users
from functions.api.admin.users import UserList
from functions.api.caller_context import require_caller

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get("/admin/users", summary="List users", tags=["admin"])
def list_users() -> UserList:
    return users.list_users(require_caller(router))
