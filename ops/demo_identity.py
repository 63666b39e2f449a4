"""Identity for the local stack: the secrets, tables and demo accounts `make run` needs.

Every function is idempotent (safe on every start). The demo credentials are for
the local stack only and are printed in the README; nothing here is imported by a
Lambda function.
"""

from __future__ import annotations

from dataclasses import dataclass

from functions.shared import names

DEMO_USER_EMAIL = "parent@demo.babyshield.local"
DEMO_USER_PASSWORD = "demo-parent-password"  # noqa: S105  # nosec B105  # pragma: allowlist secret
DEMO_ADMIN_EMAIL = "admin@demo.babyshield.local"
DEMO_ADMIN_PASSWORD = "demo-admin-password"  # noqa: S105  # nosec B105  # pragma: allowlist secret
# Local-only demo keys (make run), never deployed anywhere.
DEMO_API_KEY_ID = "de000000000000a1"
DEMO_API_KEY = "bs_de000000000000a1_localDemoUserKeyMakeRunOnly0000001"  # pragma: allowlist secret
DEMO_ADMIN_API_KEY_ID = "de000000000000a2"
DEMO_ADMIN_API_KEY = (
    "bs_de000000000000a2_localDemoAdminKeyMakeRunOnly000001"  # pragma: allowlist secret
)


# A second key of the demo user with a small limit: `babyshield audit` spends it to
# see the per-key rate limit answer 429 without locking the main demo key out.
DEMO_AUDIT_API_KEY_ID = "de000000000000a3"
DEMO_AUDIT_API_KEY = (
    "bs_de000000000000a3_localDemoAuditKeyMakeRunOnly000001"  # pragma: allowlist secret
)
DEMO_AUDIT_RATE_LIMIT = 20


@dataclass(frozen=True)
class DemoKey:
    key_id: str
    api_key: str
    scopes: tuple[str, ...]
    rate_limit_per_minute: int = 60
    purpose: str = "demo"


@dataclass(frozen=True)
class DemoAccount:
    email: str
    password: str
    role: str
    key_id: str
    api_key: str
    scopes: tuple[str, ...]
    extra_keys: tuple[DemoKey, ...] = ()

    @property
    def keys(self) -> tuple[DemoKey, ...]:
        return (DemoKey(self.key_id, self.api_key, self.scopes), *self.extra_keys)


DEMO_ACCOUNTS = (
    DemoAccount(
        DEMO_USER_EMAIL,
        DEMO_USER_PASSWORD,
        "user",
        DEMO_API_KEY_ID,
        DEMO_API_KEY,
        ("recalls:read",),
        extra_keys=(
            DemoKey(
                DEMO_AUDIT_API_KEY_ID,
                DEMO_AUDIT_API_KEY,
                ("recalls:read",),
                rate_limit_per_minute=DEMO_AUDIT_RATE_LIMIT,
                purpose="audit",
            ),
        ),
    ),
    DemoAccount(
        DEMO_ADMIN_EMAIL,
        DEMO_ADMIN_PASSWORD,
        "admin",
        DEMO_ADMIN_API_KEY_ID,
        DEMO_ADMIN_API_KEY,
        ("admin", "recalls:read"),
    ),
)


def ensure_identity_secrets() -> None:
    """The JWT key pair and the webhook secret, created once in Secrets Manager."""
    import boto3

    from functions.shared.identity.jwt_keys import generate_jwt_secret_value
    from functions.shared.identity.webhooks import generate_webhook_secret_value
    from functions.shared.settings import get_settings

    settings = get_settings()
    client = boto3.client(
        "secretsmanager", region_name=settings.region, endpoint_url=settings.aws_endpoint_url
    )
    for secret_id, make_value in (
        (settings.jwt_secret_id, generate_jwt_secret_value),
        (settings.webhook_secret_id, generate_webhook_secret_value),
    ):
        try:
            client.describe_secret(SecretId=secret_id)
        except client.exceptions.ResourceNotFoundException:
            client.create_secret(Name=secret_id, SecretString=make_value())


def ensure_identity_tables() -> None:
    """The rate-limit (and lockout) table and the webhook replay table, with TTL."""
    import boto3

    from functions.shared.settings import get_settings
    from ops.provision import ensure_tables

    settings = get_settings()
    client = boto3.client(
        "dynamodb", region_name=settings.region, endpoint_url=settings.aws_endpoint_url
    )
    ensure_tables(
        client,
        [t for t in names.TABLES if t.name in (names.RATE_LIMIT_TABLE, names.WEBHOOK_NONCE_TABLE)],
    )


def seed_demo_identity(admin_conninfo: str) -> None:
    """The demo user and admin with their API keys (as the superuser, past RLS).

    The database outlives a restart: what a session did to the demo rows (a revoked
    key, a changed role or password) is undone, so the banner's commands work again.
    """
    import psycopg

    from functions.shared.identity.api_keys import hash_secret, parse_api_key
    from functions.shared.identity.passwords import hash_password

    with psycopg.connect(admin_conninfo) as conn:
        for account in DEMO_ACCOUNTS:
            conn.execute(
                "INSERT INTO public.users (email, password_hash, role) VALUES (%s, %s, %s) "
                "ON CONFLICT (email) DO UPDATE "
                "SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role",
                (account.email, hash_password(account.password), account.role),
            )
            for key in account.keys:
                parsed = parse_api_key(key.api_key)
                if parsed is None:
                    raise ValueError(f"demo key {key.key_id} is not an API key")
                conn.execute(
                    "INSERT INTO public.api_keys "
                    "(key_id, owner_id, secret_hash, scopes, rate_limit_per_minute) "
                    "SELECT %s, id, %s, %s, %s FROM public.users WHERE email = %s "
                    "ON CONFLICT (key_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, "
                    "secret_hash = EXCLUDED.secret_hash, scopes = EXCLUDED.scopes, "
                    "rate_limit_per_minute = EXCLUDED.rate_limit_per_minute, "
                    "expires_at = NULL, revoked_at = NULL, rotated_from = NULL",
                    (
                        key.key_id,
                        hash_secret(parsed.secret),
                        list(key.scopes),
                        key.rate_limit_per_minute,
                        account.email,
                    ),
                )
