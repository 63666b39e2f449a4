"""GET /recalls (search, keyset pagination) and GET /recalls/{recall_id}."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import Field

from functions.api.models import Digits, IsoDate
from functions.api.recalls import logic
from functions.api.recalls.cursor import MAX_CURSOR_LENGTH
from functions.api.recalls.models import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Recall, RecallPage

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/recalls",
    summary="Search recalls",
    tags=["recalls"],
    responses={
        200: {"description": "A page of recalls, newest first"},
        400: {
            "description": "The cursor is not valid, or was made by another query "
            "(code cursor_mismatch: send the request again without it), or a filter has "
            "control characters."
        },
    },
)
def search_recalls(
    q: Annotated[str | None, Query(max_length=200, description="words to search")] = None,
    brand: Annotated[str | None, Query(max_length=100, description="exact brand")] = None,
    since: Annotated[IsoDate | None, Query(description="recalls on or after (YYYY-MM-DD)")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE), Query(), Digits] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of a page of this query"),
    ] = None,
) -> RecallPage:
    return logic.search_recalls(q=q, brand=brand, since=since, limit=limit, cursor=cursor)


@router.get(
    "/recalls/<recall_id>",
    summary="One recall",
    tags=["recalls"],
    responses={
        200: {"description": "The recall"},
        400: {"description": "The id is malformed."},
        404: {"description": "No recall has this id."},
    },
)
def get_recall(recall_id: str) -> Recall:
    return logic.recall_by_id(recall_id)
