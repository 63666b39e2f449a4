"""Liveness: answers without touching the database or any AWS service."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


class Health(BaseModel):
    status: str


@router.get("/health", summary="Liveness check", tags=["health"])
def health() -> Health:
    return Health(status="ok")
