"""Liveness: answers without touching the database or any AWS service."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.models import ApiModel

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


class Health(ApiModel):
    status: str


@router.get(
    "/health",
    summary="Liveness check",
    tags=["health"],
    # Nothing to validate: no parameters, no body, a constant answer. Powertools'
    # validation middleware (and building a model to serialise) would be most of
    # this route's warm cost; the model still documents the answer.
    enable_validation=False,
    responses={
        200: {
            "description": "Successful Response",
            "content": {"application/json": {"model": Health}},
        }
    },
)
def health() -> dict[str, str]:
    return {"status": "ok"}
