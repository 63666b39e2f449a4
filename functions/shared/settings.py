"""Runtime settings, read from the environment once per process.

Every setting has a safe default so a handler imports and answers `/health` with
nothing but `AWS_REGION` set: no admin address is allowlisted, no database is
touched. Code asks `get_settings()`; nothing else reads `os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MEBIBYTE = 1024 * 1024


def parse_cidrs(raw: str | list[str] | tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parse comma-separated CIDRs (or a list of them) into networks.

    A bare address becomes a single-host network. Host bits set in a CIDR are an
    error rather than silently widened: `10.0.0.1/8` is more likely a typo than
    an intent to allow all of 10/8.
    """
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    networks: list[IPNetwork] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid CIDR in allowlist: {text!r}") from exc
    return tuple(networks)


class Settings(BaseModel):
    """All settings of the platform's functions; field names map to env vars."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    service_name: str = "babyshield"
    environment: str = Field(default="aws", description="'aws' or 'local'")
    region: str = "us-east-1"
    aws_endpoint_url: str | None = None

    # Request edge
    max_body_bytes: Annotated[int, Field(gt=0)] = 10 * MEBIBYTE
    max_header_bytes: Annotated[int, Field(gt=0)] = 8 * 1024
    max_total_header_bytes: Annotated[int, Field(gt=0)] = 16 * 1024
    admin_allowed_cidrs: tuple[IPNetwork, ...] = ()
    # In AWS the allowlist lives in SSM (StringList); the env var is the local fallback.
    admin_allowed_cidrs_parameter: str | None = None
    admin_path_prefixes: tuple[str, ...] = ("/admin", "/monitoring")

    @field_validator("admin_allowed_cidrs", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: object) -> tuple[IPNetwork, ...]:
        if isinstance(value, str | list | tuple):
            return parse_cidrs(value)  # type: ignore[arg-type]
        raise ValueError("admin_allowed_cidrs must be a string or a list")

    @property
    def is_local(self) -> bool:
        return self.environment == "local"


# Environment variable -> settings field. One table, so a reader sees every knob.
_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "service_name",
    "BABYSHIELD_ENV": "environment",
    "AWS_REGION": "region",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "MAX_BODY_BYTES": "max_body_bytes",
    "MAX_HEADER_BYTES": "max_header_bytes",
    "MAX_TOTAL_HEADER_BYTES": "max_total_header_bytes",
    "ADMIN_ALLOWED_CIDRS": "admin_allowed_cidrs",
    "ADMIN_ALLOWED_CIDRS_PARAMETER": "admin_allowed_cidrs_parameter",
}


def settings_from_environment(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values = {field: env[name] for name, field in _ENVIRONMENT.items() if env.get(name)}
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; `get_settings.cache_clear()` re-reads them (tests)."""
    return settings_from_environment()
