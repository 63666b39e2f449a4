"""Identity test helpers: the DynamoDB tables, the JWT and webhook secrets in the
moto server, rotations as Secrets Manager performs them, and cache resets.

Rotations are simulated the way the service does them: a new version put with
the AWSCURRENT stage moves AWSPREVIOUS to the old current and takes it off the
version before (moto implements this staging like Secrets Manager).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from functions.shared import names


@functools.lru_cache(maxsize=8)
def _cached_client(service: str, endpoint: str | None) -> Any:
    return boto3.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


def client(service: str) -> Any:
    """A boto3 client for the moto server of this test (clients are costly to build)."""
    return _cached_client(service, os.environ.get("AWS_ENDPOINT_URL"))


def reset_identity_caches() -> None:
    from functions.shared.identity import reset_caches

    reset_caches()


@pytest.fixture
def identity_env(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Moto with the identity tables, cheap scrypt, clean caches."""
    monkeypatch.setenv("SCRYPT_N", "16")
    monkeypatch.setenv("SCRYPT_R", "1")
    reset_identity_caches()
    create_identity_tables()
    yield aws
    reset_identity_caches()


def create_identity_tables() -> None:
    dynamodb = client("dynamodb")
    for table, key in (
        (names.RATE_LIMIT_TABLE, names.RATE_LIMIT_PARTITION_KEY),
        (names.WEBHOOK_NONCE_TABLE, names.WEBHOOK_NONCE_PARTITION_KEY),
    ):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def jwt_secret_id() -> str:
    return names.secret_name("jwt-signing-key")


def webhook_secret_id() -> str:
    return names.secret_name("webhook-signing-secret")


def create_jwt_secret(algorithm: str = "ES256") -> str:
    """Create the JWT secret; returns its AWSCURRENT version id (the kid)."""
    from functions.shared.identity.jwt_keys import generate_jwt_secret_value

    response = client("secretsmanager").create_secret(
        Name=jwt_secret_id(), SecretString=generate_jwt_secret_value(algorithm)
    )
    return str(response["VersionId"])


def rotate_secret(secret_id: str, value: str) -> str:
    """Put a new AWSCURRENT version; returns its version id."""
    response = client("secretsmanager").put_secret_value(
        SecretId=secret_id, SecretString=value, VersionStages=["AWSCURRENT"]
    )
    return str(response["VersionId"])


def rotate_jwt_secret(algorithm: str = "ES256") -> str:
    from functions.shared.identity.jwt_keys import generate_jwt_secret_value

    return rotate_secret(jwt_secret_id(), generate_jwt_secret_value(algorithm))


def retire_previous(secret_id: str) -> None:
    """What an emergency rotation does: AWSPREVIOUS is taken off, so it is no longer accepted."""
    secrets = client("secretsmanager")
    stages = secrets.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    for version_id, labels in stages.items():
        if "AWSPREVIOUS" in labels:
            secrets.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSPREVIOUS", RemoveFromVersionId=version_id
            )


def secret_value(secret_id: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    response = client("secretsmanager").get_secret_value(SecretId=secret_id, VersionStage=stage)
    return dict(json.loads(response["SecretString"]))


def create_webhook_secret() -> str:
    """Create the webhook secret; returns its `whsec_` text."""
    from functions.shared.identity.webhooks import generate_webhook_secret_value

    value = generate_webhook_secret_value()
    client("secretsmanager").create_secret(Name=webhook_secret_id(), SecretString=value)
    return str(json.loads(value)["secret"])


def rotate_webhook_secret() -> str:
    from functions.shared.identity.webhooks import generate_webhook_secret_value

    value = generate_webhook_secret_value()
    rotate_secret(webhook_secret_id(), value)
    return str(json.loads(value)["secret"])


def private_key_of(version_stage: str = "AWSCURRENT") -> Any:
    from cryptography.hazmat.primitives import serialization

    document = secret_value(jwt_secret_id(), version_stage)
    return serialization.load_pem_private_key(document["private_key"].encode(), password=None)


def public_pem_of(version_stage: str = "AWSCURRENT") -> str:
    return str(secret_value(jwt_secret_id(), version_stage)["public_key"])


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_claims(subject: str, role: str = "user", **overrides: Any) -> dict[str, Any]:
    """The claims a genuine access token carries, with `overrides` applied (None deletes)."""
    import time
    import uuid

    from functions.shared.settings import get_settings

    settings = get_settings()
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "typ": "access",
        "role": role,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def forge_token(
    claims: dict[str, Any],
    *,
    kid: str | None,
    stage: str = "AWSCURRENT",
    algorithm: str = "ES256",
    extra_headers: dict[str, Any] | None = None,
    typ: str | None = "at+jwt",
) -> str:
    """Sign `claims` with the JWT secret's key of `stage`, with full control of the header."""
    import jwt

    headers: dict[str, Any] = dict(extra_headers or {})
    if kid is not None:
        headers["kid"] = kid
    if typ is not None:
        headers["typ"] = typ
    return jwt.encode(claims, private_key_of(stage), algorithm=algorithm, headers=headers)


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand: what an attacker sends when no library will sign it."""
    encoded = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{encoded}.{b64url(signature)}"


def hs256_with_public_key(claims: dict[str, Any], kid: str) -> str:
    """The classic key-confusion forgery: HMAC keyed with the (public) verification key."""
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "at+jwt", "kid": kid}
    encoded = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem_of().encode(), encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{b64url(mac)}"


def recall_event(
    source_id: str = "CPSC-26-001", kind: str = "recall.created", **data: Any
) -> bytes:
    """The body of a feed webhook delivery: one recall, `data` overriding its fields."""
    recall = {
        "source_id": source_id,
        "product": "Sleeper",
        "brand": "Dreamy",
        "hazard": "Suffocation",
        "remedy": "Refund",
        "recall_date": "2026-01-15",
        **data,
    }
    document = {"type": kind, "timestamp": datetime.now(UTC).isoformat(), "data": recall}
    return json.dumps(document).encode()
