"""The local stack's on-call printer: prints what reaches the on-call topic, and
never long-polls, since the moto server serves one call at a time and a long
poll would hold every other AWS call of `make run` (each API request's) for its
wait."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ops.local_stack import OncallPrinter


@pytest.fixture
def topic(aws: str) -> str:
    from functions.shared.blocks import aws_client, clear_caches

    clear_caches()  # clients of an earlier test's endpoint
    return str(aws_client("sns").create_topic(Name="babyshield-oncall-test")["TopicArn"])


def test_the_printer_prints_published_messages_and_polls_short(topic, capsys, monkeypatch):
    from functions.shared.blocks import aws_client

    # Given a running printer whose every receive is recorded
    monkeypatch.setattr(OncallPrinter, "POLL_SECONDS", 0.05)
    printer = OncallPrinter(topic)
    polls: list[dict[str, Any]] = []
    printed = threading.Event()

    def record(params: dict[str, Any], **_: Any) -> None:
        polls.append(dict(params))

    def delivered(**_: Any) -> None:
        printed.set()

    printer._sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", record)
    printer._sqs.meta.events.register("after-call.sqs.DeleteMessage", delivered)
    printer.start()
    try:
        # When on-call is told something
        aws_client("sns").publish(TopicArn=topic, Message="offenders blocked: 203.0.113.7")

        # Then it is printed (deleted from the queue once printed)
        assert printed.wait(10)
    finally:
        printer.stop()
    assert "offenders blocked: 203.0.113.7" in capsys.readouterr().out
    # and no receive asked the server to wait for messages
    assert polls
    assert all(poll.get("WaitTimeSeconds", 0) == 0 for poll in polls), polls
