"""Rotation Lambda for the JWT signing key pair."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import SecretsManagerEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.rotate_jwt.key_pair import JwtKeyRotator
from functions.shared.observability import logger, metrics, tracer
from functions.shared.rotation.protocol import run_step

rotator = JwtKeyRotator()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(log_event=False)
@event_source(data_class=SecretsManagerEvent)
def lambda_handler(event: SecretsManagerEvent, context: LambdaContext) -> dict[str, Any]:
    return {"outcome": run_step(event.raw_event, rotator, "rotate_jwt")}
