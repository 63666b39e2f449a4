"""Where the admin allowlist comes from: SSM in AWS, the environment locally.

The SSM value is cached by Powertools' parameter provider for a few minutes, so
an operator's change takes effect without a deploy and without an SSM call per
request. If SSM cannot be read, the allowlist is empty: fail closed.
"""

from __future__ import annotations

from functions.shared.observability import logger
from functions.shared.settings import IPNetwork, get_settings, parse_cidrs

ALLOWLIST_CACHE_SECONDS = 300


def current_allowlist() -> tuple[IPNetwork, ...]:
    settings = get_settings()
    if not settings.admin_allowed_cidrs_parameter:
        return settings.admin_allowed_cidrs
    # Imported here: only admin paths pay for the SSM client at cold start.
    from aws_lambda_powertools.utilities import parameters

    try:
        raw = parameters.get_parameter(
            settings.admin_allowed_cidrs_parameter, max_age=ALLOWLIST_CACHE_SECONDS
        )
        return parse_cidrs(str(raw))
    except Exception:  # noqa: BLE001 - any failure must fail closed, never open
        logger.exception("admin allowlist unavailable; denying admin access")
        return ()
