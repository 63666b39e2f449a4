"""GET /admin/users: the users a page at a time, for an admin (through the admin
chain), never a hash."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.admin import users
from functions.api.admin.pages import DEFAULT_ADMIN_PAGE_SIZE
from functions.api.admin.users import UserList
from functions.api.caller_context import require_caller
from functions.api.routes.paging import PAGE_RESPONSES, PageCursor, PageSize

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/admin/users", summary="List users, oldest first", tags=["admin"], responses=PAGE_RESPONSES
)
def list_users(limit: PageSize = DEFAULT_ADMIN_PAGE_SIZE, cursor: PageCursor = None) -> UserList:
    return users.list_users(require_caller(router), limit=limit, cursor=cursor)
