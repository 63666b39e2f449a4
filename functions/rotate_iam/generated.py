"""Rotation of a generated shared secret (the webhook signing secret).

Value: {"kind": "generated", "secret": "whsec_<base64 of 32 bytes>"}. No other
service holds it, so setSecret has nothing to do; the overlap comes from the
verifiers, which accept AWSCURRENT and AWSPREVIOUS until the next rotation (an
emergency rotation removes AWSPREVIOUS at once).
"""

from __future__ import annotations

import json
import time

from functions.shared.identity import webhooks
from functions.shared.rotation.protocol import RotationError, Rotator, StepContext

KIND = "generated"


class GeneratedSecretRotator(Rotator):
    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
        value = json.loads(webhooks.generate_webhook_secret_value())
        value["kind"] = KIND
        ctx.store.put_pending(ctx.secret_id, ctx.token, value)

    def set_secret(self, ctx: StepContext) -> None:
        ctx.require_pending()

    def test_secret(self, ctx: StepContext) -> None:
        pending = ctx.require_pending()
        try:
            key = webhooks.decode_secret(str(pending.value["secret"]))
        except (KeyError, ValueError):
            raise RotationError(f"{ctx.spec.name}: pending value is not a webhook secret") from None
        # Sign and verify one message the way a sender and this API's verifier will.
        now = int(time.time())
        body = b'{"rotation-test":true}'
        headers = {
            "webhook-id": f"rotation-test-{ctx.token}",
            "webhook-timestamp": str(now),
            "webhook-signature": webhooks.sign(key, f"rotation-test-{ctx.token}", now, body),
        }
        webhooks.verify_webhook(headers, body, [key], tolerance_seconds=60, now=now)
