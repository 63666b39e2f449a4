"""How long the registry remembers an address: a row past its TTL is forgotten, also
while DynamoDB has not deleted it yet (in AWS that can take days, and such rows still
show in scans)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3

from functions.shared import blocks, names
from functions.waf_responder.events import alarm_state_change_event
from tests.support.aws import REGION
from tests.support.waf import WafResources, put_waf_records, raw_registry_item

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
ADDRESS = "203.0.113.7/32"


def _put_row_past_its_ttl() -> None:
    """A block that ended 40 days ago, with three offences, TTL passed ten days ago."""
    ended = int(time.time()) - 40 * 86_400
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=names.BLOCK_REGISTRY_TABLE,
        Item=raw_registry_item(
            ADDRESS,
            version=4,
            reason="old",
            alarm=names.ALARM_WAF_BLOCKED,
            source="auto",
            seen=ended - 3600,
            blocked_until=ended,
            offences=3,
            requests=50,
            expires_at=ended + 30 * 86_400,
            write_id={"S": "0123456789abcdef"},
        ),
    )


def test_an_offence_past_its_memory_does_not_escalate_the_responders_block(
    waf: WafResources, invoke: Invoke
) -> None:
    """OFFENCE_MEMORY_SECONDS (30 days) is how long an ended block counts as an earlier
    offence. A row past it was still counted: a fourth offence, a 32-hour block, for an
    address last seen 40 days ago. It is a first offence: 4 hours."""
    _put_row_past_its_ttl()
    put_waf_records({"203.0.113.7": 12})

    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    (block,) = blocks.list_blocks()
    assert block.offences == 1
    assert block.blocked_until <= int(time.time()) + 4 * 3600
    assert block.first_seen > int(time.time()) - 3600


def test_an_offence_past_its_memory_is_no_earlier_offence_for_a_hand_block(
    waf: WafResources,
) -> None:
    _put_row_past_its_ttl()
    result = blocks.block(["203.0.113.7"], reason="scan", duration_seconds=3600, actor="alice")
    assert [b.offences for b in result.changed] == [1]
    assert result.replaced == {}


def test_a_forgotten_row_is_not_listed_nor_unblocked(waf: WafResources) -> None:
    _put_row_past_its_ttl()
    assert blocks.list_blocks(include_expired=True) == []
    result = blocks.unblock(["203.0.113.7"], actor="alice")
    assert (result.changed, result.not_found) == ([], [ADDRESS])
