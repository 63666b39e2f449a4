"""GET /admin/users: the users a page at a time, for an admin (through the admin
chain), never a hash."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import Field

from functions.api.admin import users
from functions.api.admin.pages import (
    DEFAULT_ADMIN_PAGE_SIZE,
    MAX_ADMIN_CURSOR_LENGTH,
    MAX_ADMIN_PAGE_SIZE,
)
from functions.api.admin.users import UserList
from functions.api.caller_context import require_caller
from functions.api.models import Digits

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/admin/users",
    summary="List users, oldest first",
    tags=["admin"],
    responses={
        200: {"description": "A page of users; next_cursor continues it"},
        400: {"description": "The cursor is not valid."},
    },
)
def list_users(
    limit: Annotated[
        int, Field(ge=1, le=MAX_ADMIN_PAGE_SIZE), Query(), Digits
    ] = DEFAULT_ADMIN_PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(max_length=MAX_ADMIN_CURSOR_LENGTH, description="next_cursor of a page")
    ] = None,
) -> UserList:
    return users.list_users(require_caller(router), limit=limit, cursor=cursor)
