"""POST /webhooks/recalls over HTTP: a recall change pushed by the upstream feed.

The signature was checked by the authentication edge guard, which left the
verified delivery in the resolver context; what the route does with it is
functions/api/recalls/feed.py.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.identity.caller import WEBHOOK_CONTEXT_KEY
from functions.api.recalls.feed import RecallEvent, WebhookAccepted, accept_recall

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.post(
    "/webhooks/recalls",
    summary="Recall feed webhook",
    tags=["webhooks"],
    responses={
        200: {
            "description": "Accepted: the recall was created or updated, or a newer "
            "version is already stored"
        },
        409: {
            "description": "This webhook-id was already received, or a delivery of it "
            "is being received (retry after the time the message gives), or it was "
            "received with a different event (not stored: send each event under its "
            "own webhook-id)."
        },
    },
)
def receive_recall(event: RecallEvent) -> WebhookAccepted:
    source_ip = router.current_event.request_context.identity.source_ip or ""
    return accept_recall(router.context.get(WEBHOOK_CONTEXT_KEY), event, source_ip)
