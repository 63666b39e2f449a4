"""Rotation of a generated shared secret (the webhook signing secret).

Value: {"kind": "generated", "secret": "whsec_<base64 of 32 bytes>"}. No other
service holds it, so setSecret has nothing to do; the overlap comes from the
verifiers, which accept AWSCURRENT and AWSPREVIOUS until the next rotation (an
emergency rotation removes AWSPREVIOUS at once).

The sender (the upstream feed) learns a new secret from on-call, not from the
rotation: until then it signs with AWSPREVIOUS, and the next rotation would
refuse every delivery. A routine createSecret is therefore refused
(SenderStillOnPreviousSecret) while the last accepted delivery was signed with
AWSPREVIOUS, as the API records it (webhook_signers.record_secret_use); an emergency
never is.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from functions.shared.identity import webhook_signers, webhooks
from functions.shared.rotation.protocol import RotationError, Rotator, StepContext
from functions.shared.rotation.store import CURRENT, PREVIOUS

KIND = "generated"


class SenderStillOnPreviousSecret(RotationError):
    retry_helps = False


class GeneratedSecretRotator(Rotator):
    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
        if not ctx.emergency:
            _refuse_while_sender_uses_previous(ctx)
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


def _refuse_while_sender_uses_previous(ctx: StepContext) -> None:
    """Refuse a routine rotation that would stop accepting what the sender signs with.

    The sender has switched once a delivery signed with AWSCURRENT was accepted
    after the last one signed with AWSPREVIOUS (both at one moment: not yet). With
    no delivery recorded for AWSPREVIOUS, there is nothing to protect (a first
    rotation, a sender that switched over a year ago, or one that never delivered).
    """
    previous_id = ctx.metadata.version_with(PREVIOUS)
    if previous_id is None:
        return
    state = webhook_signers.signer_state(ctx.metadata.version_with(CURRENT), previous_id)
    if not state.sender_on_previous or state.previous_signed_at is None:
        return
    raise SenderStillOnPreviousSecret(
        f"{ctx.spec.name}: the last delivery the API accepted, at "
        f"{_when(state.previous_signed_at)}, was signed with the previous secret (version "
        f"{previous_id}), and none since with the current one (version "
        f"{state.current_version}): the sender has not switched, and a rotation now would "
        "refuse its deliveries. Give the sender the current secret and rotate once a "
        "delivery signed with it was accepted, or rotate as an emergency"
    )


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
