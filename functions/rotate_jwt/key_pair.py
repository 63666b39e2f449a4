"""Rotation of the JWT signing key pair: two live keys, the kid is the version id.

Value: {"kind": "jwt-signing-key", "algorithm": "ES256", "private_key": "<PEM
PKCS8>", "public_key": "<PEM SPKI>"}. The new pair signs from the moment it is
AWSCURRENT; the old one stays AWSPREVIOUS, so tokens it signed verify until they
expire (and the JWKS endpoint serves both). An emergency rotation removes
AWSPREVIOUS, which refuses every token the old key signed.
"""

from __future__ import annotations

import json
import time
import uuid

from functions.shared.identity.jwt_keys import (
    KeyMaterialError,
    generate_jwt_secret_value,
    parse_signing_key,
)
from functions.shared.identity.secret_versions import SecretVersion as IdentityVersion
from functions.shared.rotation.protocol import RotationError, Rotator, StepContext

KIND = "jwt-signing-key"
ALGORITHM = "ES256"


class JwtKeyRotator(Rotator):
    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
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
