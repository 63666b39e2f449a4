"""Rotation of the JWT signing key pair: two live keys, the kid is the version id.

Value: {"kind": "jwt-signing-key", "algorithm": "ES256", "private_key": "<PEM
PKCS8>", "public_key": "<PEM SPKI>"}. The new pair signs from the moment it is
AWSCURRENT; the old one stays AWSPREVIOUS, so tokens it signed verify until they
expire (and the JWKS endpoint serves both). An emergency rotation removes
AWSPREVIOUS, which refuses every token the old key signed.

Only AWSCURRENT and AWSPREVIOUS verify, so each rotation drops the key two
rotations old. A routine createSecret is therefore refused (PreviousKeyStillLive)
while tokens the AWSPREVIOUS key signed may still be unexpired; an emergency never is.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from functions.shared.identity.jwt_keys import (
    KeyMaterialError,
    SigningKey,
    generate_jwt_secret_value,
    parse_signing_key,
)
from functions.shared.identity.secret_versions import SecretVersion as IdentityVersion
from functions.shared.rotation.protocol import RotationError, Rotator, StepContext
from functions.shared.rotation.store import CURRENT, SecretVersion
from functions.shared.settings import get_settings

KIND = "jwt-signing-key"
ALGORITHM = "ES256"
# Secrets Manager's version dates may be cut to the whole second.
TIMESTAMP_SLACK_SECONDS = 1


class PreviousKeyStillLive(RotationError):
    retry_helps = False


class JwtKeyRotator(Rotator):
    def __init__(self, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._now = now

    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
        if not ctx.emergency:
            self._refuse_while_previous_key_is_live(ctx)
        value = json.loads(generate_jwt_secret_value(ALGORITHM))
        value["kind"] = KIND
        ctx.store.put_pending(ctx.secret_id, ctx.token, value)

    def set_secret(self, ctx: StepContext) -> None:
        # Verifiers read the public key from the secret itself; nothing else to update.
        ctx.require_pending()

    def test_secret(self, ctx: StepContext) -> None:
        import jwt

        pending = ctx.require_pending()
        try:
            key = parse_signing_key(IdentityVersion(pending.version_id, json.dumps(pending.value)))
            now = int(time.time())
            claims = {"sub": str(uuid.uuid4()), "iat": now, "exp": now + 60}
            token = jwt.encode(
                claims, key.private_key(), algorithm=key.algorithm, headers={"kid": key.kid}
            )
            decoded = jwt.decode(token, key.public_key, algorithms=[key.algorithm])
            key.jwk()
        except (KeyMaterialError, jwt.InvalidTokenError, ValueError) as exc:
            raise RotationError(
                f"{ctx.spec.name}: version {ctx.token} does not sign and verify"
            ) from exc
        if decoded.get("sub") != claims["sub"]:
            raise RotationError(f"{ctx.spec.name}: version {ctx.token} verified another token")

    def _refuse_while_previous_key_is_live(self, ctx: StepContext) -> None:
        """Refuse a routine rotation that would drop a key whose tokens may be unexpired.

        The AWSPREVIOUS key signed until AWSCURRENT was promoted, and warm API
        instances keep signing with it for up to SECRET_CACHE_SECONDS more; its tokens
        verify for the access-token lifetime plus the clock leeway after that. The
        promotion is dated by the tag finishSecret writes, else by the version's
        creation (a value seeded outside a rotation, or one promoted before the tag).
        """
        current_id = ctx.metadata.version_with(CURRENT)
        since = ctx.metadata.current_since()
        if since is None:
            return  # as IAM's grace window: an unknown age does not block rotation
        settings = get_settings()
        window = (
            settings.access_token_ttl_seconds
            + settings.jwt_leeway_seconds
            + settings.secret_cache_seconds
            + TIMESTAMP_SLACK_SECONDS
        )
        age = self._now().timestamp() - since
        if age >= window:
            return
        previous = _signing_key(ctx.previous()[0])
        if previous is None:
            return  # a placeholder or malformed value signed no token
        raise PreviousKeyStillLive(
            f"{ctx.spec.name}: the current key (version {current_id}) has signed for {int(age)}s "
            f"and tokens the previous key (version {previous.kid}) signed may be valid "
            f"until it has signed for {window}s (access-token lifetime + clock leeway + key "
            "cache); a routine rotation now would refuse them; retry in "
            f"{int(window - age) + 1}s or rotate as an emergency"
        )


def _signing_key(version: SecretVersion | None) -> SigningKey | None:
    """The verifying key a version holds, or None if it holds none (a placeholder)."""
    if version is None:
        return None
    try:
        return parse_signing_key(IdentityVersion(version.version_id, json.dumps(version.value)))
    except KeyMaterialError:
        return None
