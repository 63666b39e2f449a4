"""Lambda entry point: EventBridge alarm state changes and the scheduled expiry sweep."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared.observability import logger, metrics, tracer
from functions.waf_responder.events import parse_event
from functions.waf_responder.respond import run


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True, log_event=False
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(parse_event(event), event, context)
