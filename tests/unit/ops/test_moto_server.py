"""The moto server of the tests and the local stack: atomic calls, bounded memory.

moto's backends take no lock, so on a server that runs calls in parallel two
conditional writes can both pass one condition; in AWS they cannot. The race
needs a thread switch inside one call, so the test makes switches frequent.
moto also keeps every model object it creates for its dashboard; the server
lets go of them, so state a call replaced does not outlive it.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import boto3
import pytest
from moto.dynamodb.models.dynamo_type import Item

from ops.moto import REGION, running_moto_server

CALLERS = 6
CALLS_EACH = 12
LIMIT = 40  # below CALLERS * CALLS_EACH, so every round ends with refusals


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _create_slots_table(endpoint: str) -> None:
    boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION).create_table(
        TableName="slots",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _live_items() -> int:
    gc.collect()
    return sum(1 for found in gc.get_objects() if type(found) is Item)


def _taken_slots(endpoint: str, key: str) -> int:
    """How many of CALLERS concurrent callers' conditional increments succeeded."""
    taken = [0] * CALLERS
    start = threading.Barrier(CALLERS)

    def caller(index: int) -> None:
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        start.wait()
        for _ in range(CALLS_EACH):
            try:
                dynamodb.update_item(
                    TableName="slots",
                    Key={"k": {"S": key}},
                    UpdateExpression="ADD hits :one",
                    ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(LIMIT)}},
                )
            except dynamodb.exceptions.ConditionalCheckFailedException:
                continue
            taken[index] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(taken)


def test_concurrent_conditional_writes_never_pass_one_condition_twice(
    frequent_thread_switches: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret
    with running_moto_server() as endpoint:
        # Given a table and callers racing for LIMIT slots of one key, round after round
        _create_slots_table(endpoint)
        rounds = [_taken_slots(endpoint, f"round-{n}") for n in range(5)]

    # Then every round handed out exactly the limit, never one more
    assert rounds == [LIMIT] * 5


def test_an_item_updated_many_times_leaves_no_copies_behind(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret
    with running_moto_server() as endpoint:
        # Given one counter item, as a rate limit keeps per key and window
        _create_slots_table(endpoint)
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)

        def count(times: int) -> None:
            for _ in range(times):
                dynamodb.update_item(
                    TableName="slots",
                    Key={"k": {"S": "counter"}},
                    UpdateExpression="ADD hits :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )

        count(10)
        before = _live_items()

        # When it is counted 200 more times
        count(200)

        # Then moto holds no more item objects than before: the one counter
        assert _live_items() - before <= 2
        hits = dynamodb.get_item(TableName="slots", Key={"k": {"S": "counter"}})["Item"]["hits"]
        assert hits == {"N": "210"}
