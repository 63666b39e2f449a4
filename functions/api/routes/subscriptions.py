"""GET/POST /me/subscriptions and DELETE /me/subscriptions/{subscription_id}: the
caller's own watched products, scoped by row-level security."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.caller_context import require_caller
from functions.api.recalls import logic
from functions.api.recalls.models import (
    MAX_SUBSCRIPTIONS,
    NewSubscription,
    Subscription,
    SubscriptionList,
)

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get("/me/subscriptions", summary="My subscriptions", tags=["subscriptions"])
def list_subscriptions() -> SubscriptionList:
    return logic.subscriptions_of(require_caller(router))


@router.post(
    "/me/subscriptions",
    summary="Watch a product",
    tags=["subscriptions"],
    responses={
        201: {"description": "Created"},
        400: {"description": "No product, or a control character in the product or brand."},
        409: {
            "description": "This product and brand are already watched (in any case "
            f"or spacing), or {MAX_SUBSCRIPTIONS} products already are."
        },
    },
)
def create_subscription(subscription: NewSubscription) -> Response[Subscription]:
    created = logic.subscribe(require_caller(router), subscription)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)


@router.delete(
    "/me/subscriptions/<subscription_id>",
    summary="Stop watching a product",
    tags=["subscriptions"],
    # No body: an empty content map, else Powertools documents the return annotation.
    responses={
        204: {"description": "Deleted", "content": {}},
        400: {"description": "The id is malformed."},
        404: {"description": "No subscription has this id."},
    },
)
def delete_subscription(subscription_id: str) -> Response[Any]:
    logic.unsubscribe(require_caller(router), subscription_id)
    return Response(status_code=204, body=None)
