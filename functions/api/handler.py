"""Lambda entry point of the API: functions.api.handler.lambda_handler.

No Powertools Tracer here: Lambda active tracing records the invocation, and
the X-Ray SDK would add ~0.5 s to every cold start of the API (coldstart.json).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api.app import app
from functions.shared.observability import logger, metrics


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False
)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
