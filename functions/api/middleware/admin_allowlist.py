"""Admin IP allowlist for `/admin` and `/monitoring`.

The caller's address is `requestContext.identity.sourceIp`, which API Gateway
fills from the TCP connection. Client-supplied headers (`X-Forwarded-For`,
`X-Real-IP`, `Forwarded`) are never consulted: any client can write them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from functions.api.middleware.allowlist_source import current_allowlist
from functions.shared.errors import Forbidden
from functions.shared.observability import logger
from functions.shared.settings import IPNetwork, get_settings

if TYPE_CHECKING:
    # For annotations only: the helpers here import without Powertools' event
    # classes, so the benchmarks' FastAPI peer runs the same checks.
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent


def is_admin_path(path: str, prefixes: tuple[str, ...]) -> bool:
    """True for the prefix and anything below it (`/admin`, `/admin/x`), not `/administer`."""
    return path in prefixes or path.startswith(_below(prefixes))


@lru_cache(maxsize=8)
def _below(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p + "/" for p in prefixes)


def address_allowed(source_ip: str, networks: Iterable[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    # An IPv4-mapped IPv6 address (::ffff:192.0.2.7) is checked as the IPv4 address it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def enforce_admin_allowlist(event: APIGatewayProxyEvent) -> None:
    settings = get_settings()
    path = event.path
    if not is_admin_path(path, settings.admin_path_prefixes):
        return
    source_ip = event.request_context.identity.source_ip or ""
    if not address_allowed(source_ip, current_allowlist()):
        from functions.api.identity.audit import without_credentials
        from functions.api.middleware.authentication import sent_method

        logger.warning(
            "admin access denied",
            extra={
                "audit": True,
                "event": "admin_ip_denied",
                "source_ip": source_ip,
                "path": without_credentials(path),
                "method": sent_method(event),
            },
        )
        raise Forbidden()
