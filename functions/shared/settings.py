"""Runtime settings, read from the environment once per process.

Every setting has a safe default so a handler imports and answers `/health` with
nothing but `AWS_REGION` set: no admin address is allowlisted, no database is
touched. Code asks `get_settings()`; nothing else reads `os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from typing import Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.shared import names, waf_rules

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What a WAF responder alarm means, and so where its offenders are found.
AlarmKind = Literal["waf-rate", "waf-blocked", "failed-sign-ins"]
_ALARM_KINDS = cast(dict[str, AlarmKind], names.RESPONDER_ALARM_KINDS)

# The largest request body, the same default as the WAF's size rule in front of the
# API (cdk/config.py): API Gateway sends WAF 16 KB of a body to inspect at no extra
# charge, and a body past what WAF inspected could hide its payload from WAF's rules.
DEFAULT_MAX_BODY_BYTES = 16 * 1024


# IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291 2.5.5.2) name IPv4 clients. Kept
# as IPv6 they would slip past IPv4 lists and the IPv4 minimum block prefix, and
# Python spells them differently by version (3.13 `::ffff:203.0.113.7`, 3.11
# `::ffff:cb00:7107`), so one block would have two registry keys.
_IPV4_MAPPED_TAG = 0xFFFF


def canonical_network(network: IPNetwork) -> IPNetwork:
    """The one spelling of a network: IPv4-mapped IPv6 as its IPv4 network, an IPv6
    zone id dropped. Every list read from settings, and everything that names a block
    (targets, offenders, registry rows read back), goes through it, so one network
    has one spelling for every reader and one registry key on every Python."""
    if not isinstance(network, ipaddress.IPv6Network):
        return network
    start = int(network.network_address)
    if network.prefixlen >= 96 and start >> 32 == _IPV4_MAPPED_TAG:
        return ipaddress.IPv4Network((start & 0xFFFF_FFFF, network.prefixlen - 96))
    if network.network_address.scope_id is not None:
        return ipaddress.IPv6Network((start, network.prefixlen))
    return network


def parse_cidrs(raw: str | list[str] | tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parse comma-separated CIDRs (or a list of them) into networks.

    A bare address becomes a single-host network. Host bits set in a CIDR are an
    error rather than silently widened: `10.0.0.1/8` is more likely a typo than
    an intent to allow all of 10/8. An IPv4-mapped network is its IPv4 network.
    """
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    networks: list[IPNetwork] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"invalid CIDR in the list: {text!r}") from exc
        networks.append(canonical_network(network))
    return tuple(networks)


# What one scrypt hash may allocate: OWASP's stronger setting (N=2^17, r=8) needs
# 128 MiB, and the API function has 512 MB. A stored hash asking for more is refused.
SCRYPT_MAX_MEMORY_BYTES = 256 * 2**20


def scrypt_memory_bytes(n: int, r: int, p: int) -> int:
    """scrypt's working memory, 128*r*(n+p) bytes (RFC 7914), with OpenSSL's overhead."""
    return 128 * r * (n + p + 2) + 2**20


class Settings(BaseModel):
    """All settings of the platform's functions; field names map to env vars."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    service_name: str = "babyshield"
    environment: str = Field(default="aws", description="'aws' or 'local'")
    region: str = "us-east-1"
    # Set by the Lambda runtime; names the reader in secret-read audit lines.
    function_name: str = "local"
    aws_endpoint_url: str | None = None
    # botocore's standard retry budget per call (its own AWS_MAX_ATTEMPTS variable).
    aws_max_attempts: Annotated[int, Field(ge=1, le=10)] = 5

    # Request edge
    max_body_bytes: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: Annotated[int, Field(gt=0)] = 8 * 1024
    max_total_header_bytes: Annotated[int, Field(gt=0)] = 16 * 1024
    admin_allowed_cidrs: tuple[IPNetwork, ...] = ()
    # In AWS the allowlist lives in SSM (StringList); the env var is the local fallback.
    admin_allowed_cidrs_parameter: str | None = None
    admin_path_prefixes: tuple[str, ...] = ("/admin", "/monitoring")

    # Identity: sign-in, tokens, API keys, webhooks (see functions/shared/identity).
    jwt_secret_id: str = names.secret_name("jwt-signing-key")
    webhook_secret_id: str = names.secret_name("webhook-signing-secret")
    rate_limit_table: str = names.RATE_LIMIT_TABLE
    webhook_nonce_table: str = names.WEBHOOK_NONCE_TABLE
    jwt_issuer: str = "https://api.babyshield.example"
    jwt_audience: str = "babyshield-api"
    access_token_ttl_seconds: Annotated[int, Field(gt=0, le=3600)] = 15 * 60
    # Clock skew tolerated between Lambda instances on exp/nbf/iat (RFC 7519 4.1.4 "leeway").
    jwt_leeway_seconds: Annotated[int, Field(ge=0, le=300)] = 30
    # How long secret versions (JWT keys, webhook secrets) are cached per instance:
    # short, so a rotation is picked up without a restart.
    secret_cache_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    # scrypt cost (OWASP Password Storage: N=2^17,r=8,p=1 or N=2^14 with more p; 2^14 is
    # the floor here). Tests lower it through the environment.
    scrypt_n: Annotated[int, Field(ge=2, le=2**20)] = 2**14
    scrypt_r: Annotated[int, Field(ge=1, le=32)] = 8
    scrypt_p: Annotated[int, Field(ge=1, le=16)] = 1
    login_failure_window_seconds: Annotated[int, Field(gt=0)] = 15 * 60
    login_account_failure_threshold: Annotated[int, Field(gt=0)] = 5
    login_ip_failure_threshold: Annotated[int, Field(gt=0)] = 50
    login_lockout_base_seconds: Annotated[int, Field(gt=0)] = 30
    login_lockout_max_seconds: Annotated[int, Field(gt=0)] = 15 * 60
    webhook_tolerance_seconds: Annotated[int, Field(gt=0, le=3600)] = 5 * 60
    api_key_rotation_grace_days: Annotated[int, Field(ge=0, le=90)] = 7
    # "METHOD /path" pairs of admin routes that also need an HMAC request signature.
    admin_signed_routes: tuple[str, ...] = ()

    @field_validator("scrypt_n")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("scrypt_n must be a power of two")
        return value

    @field_validator("admin_signed_routes", mode="before")
    @classmethod
    def _parse_signed_routes(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, list | tuple):
            items = [str(item) for item in value]
        else:
            raise ValueError("admin_signed_routes must be a string or a list")
        routes = []
        for item in items:
            parts = item.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].startswith("/"):
                raise ValueError("admin_signed_routes entries look like 'POST /admin/api-keys'")
            # The request path is matched as the resolver routes it (canonical_path): a
            # pattern spelled another way would match no request, and sign nothing.
            routes.append(f"{parts[0].upper()} {canonical_path(parts[1])}")
        return tuple(routes)

    # WAF responder: alarm -> offenders -> block registry -> auto-block IP sets.
    web_acl_name: str = names.WEB_ACL
    web_acl_id: str | None = None
    waf_scope: Literal["REGIONAL", "CLOUDFRONT"] = "REGIONAL"
    # An IP set id of None means "look it up by name" (the local stack has no fixed ids).
    auto_block_ipset_v4_name: str = names.AUTO_BLOCK_IPSET_V4
    auto_block_ipset_v4_id: str | None = None
    auto_block_ipset_v6_name: str = names.AUTO_BLOCK_IPSET_V6
    auto_block_ipset_v6_id: str | None = None
    block_registry_table: str = names.BLOCK_REGISTRY_TABLE
    idempotency_table: str = names.IDEMPOTENCY_TABLE
    oncall_topic_arn: str | None = None
    waf_log_group: str = names.WAF_LOG_GROUP
    api_log_group: str = names.API_LOG_GROUP
    rate_rule_name: str = names.RATE_RULE
    waf_alarm_kinds: dict[str, AlarmKind] = Field(default_factory=lambda: dict(_ALARM_KINDS))
    blocked_requests_threshold: Annotated[int, Field(gt=0)] = 100
    failed_sign_ins_threshold: Annotated[int, Field(gt=0)] = 20
    offender_window_seconds: Annotated[int, Field(ge=60)] = 900
    # IPv6 offenders are counted and blocked per network of this prefix: a client
    # holds a /64 (or wider) and can take a new address in it for every request.
    ipv6_offender_prefix: Annotated[int, Field(ge=48, le=128)] = 64
    logs_query_deadline_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_new_blocks_per_event: Annotated[int, Field(gt=0)] = 500
    block_expiry_seconds: Annotated[int, Field(ge=60)] = 4 * 3600
    # A client the rate rule limited was told to retry after its window (429,
    # Retry-After): blocked that long, not the default hours, if the responder blocks
    # it; a repeat escalates as any other.
    block_expiry_by_alarm: dict[str, int] = Field(
        default_factory=lambda: {names.ALARM_WAF_RATE: waf_rules.RATE_LIMIT_WINDOW_SECONDS}
    )
    # A repeat offender's block lasts expiry * factor**(offences - 1), up to the cap.
    block_escalation_factor: Annotated[int, Field(ge=1)] = 2
    block_max_expiry_seconds: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    # How long the registry remembers an expired block, so a return counts as a repeat.
    offence_memory_seconds: Annotated[int, Field(ge=0)] = 30 * 24 * 3600
    # WAF's per-IP-set limit (AWS WAF quotas: 10,000 addresses per IP set).
    ipset_max_addresses: Annotated[int, Field(gt=0, le=10_000)] = 10_000
    never_block_cidrs: tuple[IPNetwork, ...] = ()
    never_block_cidrs_parameter: str | None = None

    @field_validator("never_block_cidrs", mode="before")
    @classmethod
    def _parse_never_block(cls, value: object) -> tuple[IPNetwork, ...]:
        if isinstance(value, str | list | tuple):
            return parse_cidrs(value)
        raise ValueError("never_block_cidrs must be a string or a list")

    @field_validator("waf_alarm_kinds", "block_expiry_by_alarm", mode="before")
    @classmethod
    def _parse_pairs(cls, value: object) -> object:
        # From the environment these come as "alarm-name=value,alarm-name=value".
        if isinstance(value, str):
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("expected comma-separated name=value pairs")
            return {name.strip(): setting.strip() for name, setting in pairs}
        return value

    @field_validator("block_expiry_by_alarm", mode="after")
    @classmethod
    def _rate_window_unless_named(cls, value: dict[str, int]) -> dict[str, int]:
        # Setting another alarm's expiry keeps the rate alarm's default.
        return {names.ALARM_WAF_RATE: waf_rules.RATE_LIMIT_WINDOW_SECONDS, **value}

    @model_validator(mode="after")
    def _scrypt_memory_within_bounds(self) -> Settings:
        # Each bound alone allows 4 GiB; the product is what one sign-in allocates.
        needed = scrypt_memory_bytes(self.scrypt_n, self.scrypt_r, self.scrypt_p)
        if needed > SCRYPT_MAX_MEMORY_BYTES:
            raise ValueError(
                f"scrypt_n, scrypt_r and scrypt_p need {needed // 2**20} MiB per hash; "
                f"at most {SCRYPT_MAX_MEMORY_BYTES // 2**20} MiB is allowed"
            )
        return self

    @model_validator(mode="after")
    def _per_alarm_expiry_within_bounds(self) -> Settings:
        # As block_expiry_seconds is bounded: a negative duration would report a block
        # that never holds, one above the cap would outlast it.
        for alarm, seconds in self.block_expiry_by_alarm.items():
            if not 60 <= seconds <= self.block_max_expiry_seconds:
                raise ValueError(
                    f"block_expiry_by_alarm: {alarm}={seconds} must be between 60 and "
                    f"block_max_expiry_seconds ({self.block_max_expiry_seconds})"
                )
        return self

    @field_validator("admin_allowed_cidrs", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: object) -> tuple[IPNetwork, ...]:
        if isinstance(value, str | list | tuple):
            return parse_cidrs(value)
        raise ValueError("admin_allowed_cidrs must be a string or a list")

    # Database (functions/shared/db). In AWS each tier's credentials come from its
    # Secrets Manager secret; the *_URL overrides are honoured in local mode only, so a
    # stray variable can never switch off TLS in AWS.
    db_readonly_secret_id: str = names.secret_name("db-readonly")
    db_app_secret_id: str = names.secret_name("db-app")
    db_admin_secret_id: str = names.secret_name("db-admin")
    database_url: str | None = None
    database_readonly_url: str | None = None
    database_app_url: str | None = None
    # CA bundle for sslmode=verify-full: a file path (the RDS bundle) or libpq's "system".
    db_ssl_root_cert: str = "system"
    # A Lambda instance serves one request at a time; two leaves room for a check.
    db_pool_max_size: Annotated[int, Field(gt=0, le=100)] = 2
    db_pool_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    db_connect_timeout_seconds: Annotated[int, Field(gt=0, le=60)] = 5
    # The API's own statement limit, under the tiers' role defaults (30 s, 60 s):
    # a slow statement is cancelled and answered 503 well inside the API's 29 s.
    db_statement_timeout_seconds: Annotated[int, Field(gt=0, le=25)] = 10
    # Test-only caller identity (X-Test-User-Id / X-Test-User-Role headers) until the
    # identity layer fills the caller; off unless TEST_CALLER_IDENTITY=1, and read
    # through `test_callers`.
    test_caller_identity: bool = False

    @property
    def is_local(self) -> bool:
        return self.environment == "local"

    @property
    def test_callers(self) -> bool:
        """Whether the test-only caller headers count: switched on, and in local mode
        only, so a stray variable in AWS can never let a header name the caller."""
        return self.test_caller_identity and self.is_local


def canonical_path(path: str) -> str:
    """Repeated slashes collapsed, a trailing one dropped: the resolver routes `/x/` and
    `/x//` as `/x`, so a check on the raw path could be stepped around."""
    return re.sub("/{2,}", "/", path).rstrip("/") or "/"


# Environment variable -> settings field. One table, so a reader sees every knob
# (and `babyshield` names the variable behind an invalid setting).
ENVIRONMENT_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME": "service_name",
    "BABYSHIELD_ENV": "environment",
    "AWS_REGION": "region",
    "AWS_LAMBDA_FUNCTION_NAME": "function_name",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "AWS_MAX_ATTEMPTS": "aws_max_attempts",
    "MAX_BODY_BYTES": "max_body_bytes",
    "MAX_HEADER_BYTES": "max_header_bytes",
    "MAX_TOTAL_HEADER_BYTES": "max_total_header_bytes",
    "ADMIN_ALLOWED_CIDRS": "admin_allowed_cidrs",
    "ADMIN_ALLOWED_CIDRS_PARAMETER": "admin_allowed_cidrs_parameter",
    "JWT_SECRET_ID": "jwt_secret_id",
    "WEBHOOK_SECRET_ID": "webhook_secret_id",
    "RATE_LIMIT_TABLE": "rate_limit_table",
    "WEBHOOK_NONCE_TABLE": "webhook_nonce_table",
    "JWT_ISSUER": "jwt_issuer",
    "JWT_AUDIENCE": "jwt_audience",
    "ACCESS_TOKEN_TTL_SECONDS": "access_token_ttl_seconds",
    "JWT_LEEWAY_SECONDS": "jwt_leeway_seconds",
    "SECRET_CACHE_SECONDS": "secret_cache_seconds",
    "SCRYPT_N": "scrypt_n",
    "SCRYPT_R": "scrypt_r",
    "SCRYPT_P": "scrypt_p",
    "LOGIN_FAILURE_WINDOW_SECONDS": "login_failure_window_seconds",
    "LOGIN_ACCOUNT_FAILURE_THRESHOLD": "login_account_failure_threshold",
    "LOGIN_IP_FAILURE_THRESHOLD": "login_ip_failure_threshold",
    "LOGIN_LOCKOUT_BASE_SECONDS": "login_lockout_base_seconds",
    "LOGIN_LOCKOUT_MAX_SECONDS": "login_lockout_max_seconds",
    "WEBHOOK_TOLERANCE_SECONDS": "webhook_tolerance_seconds",
    "API_KEY_ROTATION_GRACE_DAYS": "api_key_rotation_grace_days",
    "ADMIN_SIGNED_ROUTES": "admin_signed_routes",
    "WEB_ACL_NAME": "web_acl_name",
    "WEB_ACL_ID": "web_acl_id",
    "WAF_SCOPE": "waf_scope",
    "AUTO_BLOCK_IPSET_V4_NAME": "auto_block_ipset_v4_name",
    "AUTO_BLOCK_IPSET_V4_ID": "auto_block_ipset_v4_id",
    "AUTO_BLOCK_IPSET_V6_NAME": "auto_block_ipset_v6_name",
    "AUTO_BLOCK_IPSET_V6_ID": "auto_block_ipset_v6_id",
    "BLOCK_REGISTRY_TABLE": "block_registry_table",
    "IDEMPOTENCY_TABLE": "idempotency_table",
    "ONCALL_TOPIC_ARN": "oncall_topic_arn",
    "WAF_LOG_GROUP": "waf_log_group",
    "API_LOG_GROUP": "api_log_group",
    "RATE_RULE_NAME": "rate_rule_name",
    "WAF_ALARM_KINDS": "waf_alarm_kinds",
    "BLOCKED_REQUESTS_THRESHOLD": "blocked_requests_threshold",
    "FAILED_SIGN_INS_THRESHOLD": "failed_sign_ins_threshold",
    "OFFENDER_WINDOW_SECONDS": "offender_window_seconds",
    "IPV6_OFFENDER_PREFIX": "ipv6_offender_prefix",
    "LOGS_QUERY_DEADLINE_SECONDS": "logs_query_deadline_seconds",
    "MAX_NEW_BLOCKS_PER_EVENT": "max_new_blocks_per_event",
    "BLOCK_EXPIRY_SECONDS": "block_expiry_seconds",
    "BLOCK_EXPIRY_BY_ALARM": "block_expiry_by_alarm",
    "BLOCK_ESCALATION_FACTOR": "block_escalation_factor",
    "BLOCK_MAX_EXPIRY_SECONDS": "block_max_expiry_seconds",
    "OFFENCE_MEMORY_SECONDS": "offence_memory_seconds",
    "IPSET_MAX_ADDRESSES": "ipset_max_addresses",
    "NEVER_BLOCK_CIDRS": "never_block_cidrs",
    "NEVER_BLOCK_CIDRS_PARAMETER": "never_block_cidrs_parameter",
    "DB_READONLY_SECRET_ID": "db_readonly_secret_id",
    "DB_APP_SECRET_ID": "db_app_secret_id",
    "DB_ADMIN_SECRET_ID": "db_admin_secret_id",
    "DATABASE_URL": "database_url",
    "DATABASE_READONLY_URL": "database_readonly_url",
    "DATABASE_APP_URL": "database_app_url",
    "DB_SSL_ROOT_CERT": "db_ssl_root_cert",
    "DB_POOL_MAX_SIZE": "db_pool_max_size",
    "DB_POOL_TIMEOUT_SECONDS": "db_pool_timeout_seconds",
    "DB_CONNECT_TIMEOUT_SECONDS": "db_connect_timeout_seconds",
    "DB_STATEMENT_TIMEOUT_SECONDS": "db_statement_timeout_seconds",
    "TEST_CALLER_IDENTITY": "test_caller_identity",
}


def settings_from_environment(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values = {field: env[name] for name, field in ENVIRONMENT_VARIABLES.items() if env.get(name)}
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; `get_settings.cache_clear()` re-reads them (tests)."""
    return settings_from_environment()
