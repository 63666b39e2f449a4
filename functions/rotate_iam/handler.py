"""Rotation Lambda for IAM access keys and generated secrets (webhook signing secret).

It also runs the daily sweep that deactivates a previous IAM key once its overlap
window has passed (`key_sweep.py`), when invoked with that sweep's exact event.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.rotate_iam.key_sweep import PreviousKeySweep, is_sweep_event
from functions.rotate_iam.rotators import default_rotator
from functions.shared.observability import logger, metrics, tracer
from functions.shared.rotation.protocol import RotationError, run_step

rotator = default_rotator()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if is_sweep_event(event):
        return PreviousKeySweep().run()
    if not isinstance(event, dict):
        raise RotationError("rotate_iam expects a JSON object: a rotation step or the key sweep")
    # Anything else is a rotation step's event, held to the rotation gate.
    return {"outcome": run_step(event, rotator, "rotate_iam")}
