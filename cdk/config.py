"""Deployment settings read from CDK context, with defaults that need no AWS account.

Every knob an operator may turn lives here, typed and validated once, so a
construct receives plain values and never reads context itself. `cdk.json`
holds the defaults; `cdk synth -c babyshield:geoBlockCountries=KP,IR` overrides one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from constructs import Node

from functions.shared.settings import DEFAULT_MAX_BODY_BYTES
from functions.shared.waf_rules import ADMIN_PATHS

CONTEXT_PREFIX = "babyshield:"
MAX_INSPECTED_BODY_BYTES = 64 * 1024
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# One address, as SNS takes it: no spaces, no list, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything the stack needs besides the code; defaults are production-safe."""

    account: str | None = None
    region: str = "us-east-1"
    geo_block_countries: tuple[str, ...] = ()
    admin_allowed_cidrs_v4: tuple[str, ...] = ()
    admin_allowed_cidrs_v6: tuple[str, ...] = ()
    # Admin routes ("POST /admin/api-keys*", fnmatch) that need a signed request.
    admin_signed_routes: tuple[str, ...] = ()
    # WAF: requests per IP per 5 minutes; the largest body: WAF refuses a larger
    # one (it could not inspect the rest) and so does the API (MAX_BODY_BYTES).
    # API Gateway sends WAF 16 KB of body at no extra charge, up to 64 KB for a fee.
    rate_limit_per_5_minutes: int = 2000
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Alarms: thresholds per 5-minute period.
    waf_blocked_threshold: int = 100
    failed_signin_threshold: int = 20
    api_5xx_threshold: int = 5
    # API Gateway stage throttling and the API function's reserved concurrency. The
    # burst stays within the concurrency: past it Lambda throttles, and API Gateway
    # answers a throttled proxy invocation with a 500 (paging on-call), not its 429.
    api_rate_limit: int = 100
    api_burst_limit: int = 50
    api_reserved_concurrency: int = 50
    db_instance_class: str = "t4g.small"
    db_multi_az: bool = True
    log_retention_days: int = 365
    oncall_email: str | None = None

    def __post_init__(self) -> None:
        for country in self.geo_block_countries:
            if not _COUNTRY.match(country):
                raise ValueError(f"geoBlockCountries: {country!r} is not an ISO 3166 alpha-2 code")
        if self.oncall_email is not None and not _EMAIL.match(self.oncall_email):
            raise ValueError(f"oncallEmail: {self.oncall_email!r} is not one email address")
        for cidr in self.admin_allowed_cidrs_v4:
            if ipaddress.ip_network(cidr, strict=True).version != 4:
                raise ValueError(f"adminAllowedCidrsV4: {cidr!r} is not an IPv4 network")
        for cidr in self.admin_allowed_cidrs_v6:
            if ipaddress.ip_network(cidr, strict=True).version != 6:
                raise ValueError(f"adminAllowedCidrsV6: {cidr!r} is not an IPv6 network")
        for route in self.admin_signed_routes:
            parts = route.split()
            if len(parts) != 2 or not parts[1].startswith(ADMIN_PATHS):
                raise ValueError(
                    f"adminSignedRoutes: {route!r} is not 'METHOD /admin/...' "
                    "(e.g. 'POST /admin/api-keys*')"
                )
        if not 1 <= self.max_body_bytes <= MAX_INSPECTED_BODY_BYTES:
            raise ValueError(
                f"maxBodyBytes must be between 1 and {MAX_INSPECTED_BODY_BYTES}: "
                "WAF inspects at most 64 KB of an API Gateway request's body"
            )
        if not 10 <= self.rate_limit_per_5_minutes <= 2_000_000_000:
            raise ValueError("rateLimitPer5Minutes must be between 10 and 2e9 (WAF's bounds)")
        for name in ("waf_blocked_threshold", "failed_signin_threshold", "api_5xx_threshold"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 1 <= self.api_burst_limit <= self.api_reserved_concurrency:
            raise ValueError(
                f"apiBurstLimit must be between 1 and apiReservedConcurrency "
                f"({self.api_reserved_concurrency}): the requests of a burst past the "
                "function's concurrency are throttled by Lambda, which API Gateway "
                "answers with 500s, not its own 429"
            )

    @classmethod
    def from_context(cls, node: Node) -> DeploymentConfig:
        def value(key: str) -> Any:
            return node.try_get_context(CONTEXT_PREFIX + key)

        def text_list(key: str) -> tuple[str, ...]:
            raw = value(key)
            if raw is None or raw == "":
                return ()
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(item).strip() for item in items if str(item).strip())

        def number(key: str, default: int) -> int:
            raw = value(key)
            return default if raw is None or raw == "" else int(raw)

        def flag(key: str, default: bool) -> bool:
            raw = value(key)
            if raw is None or raw == "":
                return default
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")

        defaults = cls()
        return cls(
            account=str(value("account")) if value("account") else None,
            region=str(value("region") or defaults.region),
            geo_block_countries=tuple(c.upper() for c in text_list("geoBlockCountries")),
            admin_allowed_cidrs_v4=text_list("adminAllowedCidrsV4"),
            admin_allowed_cidrs_v6=text_list("adminAllowedCidrsV6"),
            admin_signed_routes=text_list("adminSignedRoutes"),
            rate_limit_per_5_minutes=number(
                "rateLimitPer5Minutes", defaults.rate_limit_per_5_minutes
            ),
            max_body_bytes=number("maxBodyBytes", defaults.max_body_bytes),
            waf_blocked_threshold=number("wafBlockedThreshold", defaults.waf_blocked_threshold),
            failed_signin_threshold=number(
                "failedSigninThreshold", defaults.failed_signin_threshold
            ),
            api_5xx_threshold=number("api5xxThreshold", defaults.api_5xx_threshold),
            api_rate_limit=number("apiRateLimit", defaults.api_rate_limit),
            api_burst_limit=number("apiBurstLimit", defaults.api_burst_limit),
            api_reserved_concurrency=number(
                "apiReservedConcurrency", defaults.api_reserved_concurrency
            ),
            db_instance_class=str(value("dbInstanceClass") or defaults.db_instance_class),
            db_multi_az=flag("dbMultiAz", defaults.db_multi_az),
            log_retention_days=number("logRetentionDays", defaults.log_retention_days),
            oncall_email=str(value("oncallEmail")) if value("oncallEmail") else None,
        )
