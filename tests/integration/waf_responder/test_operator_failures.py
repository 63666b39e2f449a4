"""An operator's block or unblock when the registry fails partway: what took effect is
said and audited, and repeating the command finishes it.

Against the moto server; only DynamoDB's own refusal (throttling past botocore's
retries) is injected, at the registry's client.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.shared import blocks, names
from tests.support.aws import REGION
from tests.support.waf import (
    WafResources,
    ip_set_addresses,
    put_row_under_another_spelling,
    responders_block,
)

A = "203.0.113.7/32"
B = "203.0.113.8/32"


def _throttled(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {
                "Code": "ProvisionedThroughputExceededException",
                "Message": "throttled (retries exhausted)",
            }
        },
        operation,
    )


class _Refusing:
    """The registry's DynamoDB client, refusing the named operations while `on`."""

    def __init__(self, real: Any, operations: set[str]) -> None:
        self._real = real
        self._operations = operations
        self.on = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name in self._operations:

            def call(*args: Any, **kwargs: Any) -> Any:
                if self.on:
                    raise _throttled(name)
                return attribute(*args, **kwargs)

            return call
        return attribute


def _refusing_registry(monkeypatch: pytest.MonkeyPatch, *operations: str) -> _Refusing:
    refusing = _Refusing(blocks._dynamodb(), set(operations))
    monkeypatch.setattr(blocks, "_dynamodb", lambda: refusing)
    return refusing


def _row(key: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        boto3.client("dynamodb", region_name=REGION)
        .get_item(
            TableName=names.BLOCK_REGISTRY_TABLE,
            Key={names.TABLE_PARTITION_KEY: {"S": key}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return found


# --- An operator's block: a row written on an earlier claim pass --------------------


def test_an_operator_block_that_fails_on_a_later_claim_pass_names_what_took_effect(
    waf: WafResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pass 1 of decide_and_claim writes A; B changed under it (a responder), so the
    block is decided again; pass 2's writes are refused (DynamoDB throttling past its
    retries). A is blocked in the registry by this operator, yet the error says
    nothing of it: not RegistryWriteFailed, so no audit of A (blocks._audit, nor the
    API's audit_log row via partly_done), and the API answers 503 / the CLI says "AWS
    refused the request", while the sweep enforces A."""
    refusing = _refusing_registry(monkeypatch, "put_item")
    real_claim = blocks.BlockRegistry.claim
    passes: list[int] = []

    def claim(self: blocks.BlockRegistry, *args: Any, **kwargs: Any) -> list[str]:
        passes.append(1)
        if len(passes) == 1:
            # A responder blocks B between the operator's read and write.
            self.put_many([responders_block(B)], memory_seconds=86400)
        else:
            refusing.on = True
        return real_claim(self, *args, **kwargs)

    monkeypatch.setattr(blocks.BlockRegistry, "claim", claim)

    with pytest.raises(Exception) as failed:  # noqa: PT011 - the type is the finding
        blocks.block([A, B], reason="on-call: scanner", duration_seconds=3600, actor="oncall")

    refusing.on = False
    row = _row(A)
    # The operator's block of A took effect (it is in the registry, live, theirs) ...
    assert row is not None
    assert row["actor"]["S"] == "oncall"
    assert int(row["blocked_until"]["N"]) > time.time()
    # ... so the failure must say so, and A must be audited as changed.
    assert isinstance(failed.value, blocks.RegistryWriteFailed), (
        f"{type(failed.value).__name__} raised: the block of {A} took effect unaudited"
    )
    assert [b.ip for b in failed.value.changed] == [A]


# --- An unblock whose stale-key deletion fails after its claim ---------------------


def test_an_unblock_whose_stale_row_delete_fails_still_lifts_the_block(
    waf: WafResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim (the canonical row released) and the deletion of the row under the
    older spelling are two writes. With the second throttled the unblock has still
    taken effect: the canonical row decides wherever both are read, the IP set drops
    the address, and the command says it was unblocked rather than failing."""
    legacy = "::ffff:203.0.113.7/128"
    put_row_under_another_spelling(legacy)
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == [A]

    refusing = _refusing_registry(monkeypatch, "batch_write_item")
    refusing.on = True
    result = blocks.unblock([A], actor="oncall")
    refusing.on = False

    assert [b.ip for b in result.changed] == [A]
    assert "released_at" in (_row(A) or {})
    assert _row(legacy) is not None  # left behind, and inert
    assert blocks.list_blocks() == []
    assert ip_set_addresses(waf, 4) == []
    # A later change of the address deletes it
    blocks.block([A], reason="again", duration_seconds=600, actor="oncall")
    assert _row(legacy) is None
