"""Where the admin allowlist comes from: SSM in AWS, the environment locally.

The same reader the WAF responder uses for its protected lists
(functions/shared/blocks.py::read_cidrs): the SSM value is cached a few minutes,
so an operator's change takes effect without a deploy and without an SSM call per
request, and the client has short timeouts. If SSM cannot be read, the allowlist
is empty: fail closed.
"""

from __future__ import annotations

from functions.shared.observability import logger
from functions.shared.settings import IPNetwork, get_settings


def current_allowlist() -> tuple[IPNetwork, ...]:
    settings = get_settings()
    if not settings.admin_allowed_cidrs_parameter:
        return settings.admin_allowed_cidrs
    # Imported here: only admin paths pay for botocore and the SSM client at cold start.
    from functions.shared.aws_clients import REQUEST
    from functions.shared.blocks import ProtectedListUnavailable, read_cidrs, request_budget

    try:
        # A request's budget: a stalled SSM must turn into a quick refusal, not an API
        # Gateway timeout after the background client's retries.
        with request_budget(REQUEST):
            return read_cidrs(settings.admin_allowed_cidrs_parameter, settings.admin_allowed_cidrs)
    except ProtectedListUnavailable:
        logger.exception("admin allowlist unavailable; denying admin access")
        return ()
