"""Every user, for an admin, never a password hash."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from functions.api.admin import require_admin
from functions.api.models import ApiModel
from functions.shared.caller import Caller


class UserView(ApiModel):
    id: UUID
    email: str
    role: str
    created_at: datetime


class UserList(ApiModel):
    users: list[UserView]


def list_users(caller: Caller) -> UserList:
    from functions.api.identity.store import list_users as query_users

    actor = require_admin(caller)
    return UserList(users=[UserView(**row) for row in query_users(actor)])
