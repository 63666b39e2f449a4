"""GET /admin/users: every user, for an admin (through the admin chain), never a hash."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.caller_context import require_caller
from functions.api.models import ApiModel
from functions.shared.errors import Forbidden

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


class UserView(ApiModel):
    id: UUID
    email: str
    role: str
    created_at: datetime


class UserList(ApiModel):
    users: list[UserView]


@router.get("/admin/users", summary="List users", tags=["admin"])
def list_users() -> UserList:
    from functions.api.identity.store import list_users as query_users

    caller = require_caller(router)
    if caller.role != "admin":
        raise Forbidden()
    return UserList(users=[UserView(**row) for row in query_users(caller)])
