"""Scheduled check: a SecretAgeDays metric per inventory secret."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared.observability import logger, tracer
from functions.shared.rotation.age import publish_secret_ages


@tracer.capture_lambda_handler
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return publish_secret_ages()
