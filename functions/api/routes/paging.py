"""The query parameters of a paged admin list (functions/api/admin/pages.py)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import Field

from functions.api.admin.pages import MAX_ADMIN_CURSOR_LENGTH, MAX_ADMIN_PAGE_SIZE
from functions.api.models import Digits

PageSize = Annotated[int, Field(ge=1, le=MAX_ADMIN_PAGE_SIZE), Query(), Digits]
PageCursor = Annotated[
    str | None,
    Query(max_length=MAX_ADMIN_CURSOR_LENGTH, description="next_cursor of a page of this query"),
]
PAGE_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {"description": "A page, oldest first; next_cursor continues it"},
    400: {
        "description": "The cursor is not valid, or was made by another query (code "
        "cursor_mismatch: send the request again without it)."
    },
}
