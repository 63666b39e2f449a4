"""A recall described in ordinary CPSC prose is stored and found, end to end.

"3 in 1 and 4 in 1 convertible cribs" and '"Delta" or "Delta Children" is printed
on the headboard' read like SQL's IN and IS to a detector that took them for bare
comparisons: the feed's signed delivery was refused with a 400 (a recall not
stored) and a parent's search for it too. Real PostgreSQL, the moto server and a
Standard Webhooks signature, through the real handler.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from standardwebhooks import Webhook

from tests.integration.identity.conftest import IdentityWorld, world
from tests.support.api import call_api
from tests.support.identity import identity_env, recall_event

__all__ = ["identity_env", "world"]

DESCRIPTION = (
    "This recall involves Delta Children 3 in 1 and 4 in 1 convertible cribs sold in "
    '2 colors. The brand name "Delta" or "Delta Children" is printed on the headboard.'
)


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """What a sender built on the standardwebhooks reference library sends."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    moment = datetime.fromtimestamp(time.time(), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body.decode()),
        "Content-Type": "application/json",
    }


def test_a_recall_of_convertible_cribs_is_stored_and_found(world: IdentityWorld):
    # Given the feed's signed delivery of a recall described as CPSC writes it
    body = recall_event(
        source_id="CPSC-26-301",
        product="Emery 4 in 1 Convertible Crib",
        brand="Delta Children",
        hazard="The slats can detach, creating a gap in which a child can become entrapped.",
        description=DESCRIPTION,
    )

    # When it is delivered
    delivered = call_api(
        "POST",
        "/webhooks/recalls",
        headers=signed_headers(world.webhook_secret, body),
        body=body,
    )

    # Then it is stored as sent
    assert delivered.status == 200, delivered.body
    assert world.query("SELECT description FROM recalls") == [(DESCRIPTION,)]
    # And a parent's search in the same words finds it
    found = call_api("GET", "/recalls", query=f"q={quote('3 in 1 or 4 in 1 crib')}")
    assert found.status == 200, found.body
    assert [item["source_id"] for item in found.json()["items"]] == ["CPSC-26-301"]
