"""`babyshield webhook send` against the real API handler (behind the local HTTP server,
as `make run` serves it), migrated PostgreSQL and the moto server.

On-call's deliveries are not the feed's: they carry ids in the `babyshield-cli_`
space, which the signature covers, so the API keeps them out of the record of which
secret the feed signs with. The command refuses an id the API would refuse before it
reads the secret or sends anything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.shared.identity.webhook_signers import CLI_MESSAGE_ID_PREFIX
from functions.shared.identity.webhooks import MESSAGE_ID_PATTERN
from functions.shared.rotation.age import feed_signer
from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed
from functions.shared.rotation.store import SecretStore
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import recall_event, reset_identity_caches

NAME = "webhook-signing-secret"
PATH = "/webhooks/recalls"
# The longest id the API takes, less the space the command puts the id in.
LONGEST_OWN_PART = 256 - len(CLI_MESSAGE_ID_PREFIX)


@pytest.fixture
def driver(world) -> LocalRotationDriver:
    return LocalRotationDriver(
        store=SecretStore(caller="test"), backoff_seconds=0.0, sleep=lambda _: None
    )


@pytest.fixture
def api_url(world) -> Iterator[str]:
    """The real API handler behind the local HTTP server, as `make run` serves it."""
    from ops.local_server import api_handler
    from tests.support.local_server import serve

    for server in serve(api_handler()):
        yield server.url


def _deliver(secret: str, source_id: str) -> int:
    body = recall_event(source_id=source_id)
    return int(post(body, signed_headers(secret, body)).status)


def test_an_on_call_webhook_send_does_not_count_as_the_feed_switching_secrets(
    world, driver, api_url, capsys
):
    """The rotation guard, the `webhook-feed-on-previous-secret` alarm and `babyshield
    secrets` rest on the feed's last accepted delivery. `babyshield webhook send`
    signs with AWSCURRENT: taken for the feed, one send after a rotation the feed was
    not told about would clear the alarm and let the next routine rotation retire the
    secret the feed still signs with, after which every recall it sends is a 401."""
    from ops.cli import main

    # Given a routine rotation the feed was not told about: it still signs with the old
    first = world.webhook_secret
    driver.rotate(NAME)
    reset_identity_caches()
    assert _deliver(first, "CPSC-FEED-1") == 200
    assert feed_signer(SecretStore(caller="test")).sender_on_previous

    # When on-call tries the endpoint with the command (it reads AWSCURRENT itself)
    code = main(["webhook", "send", "--url", f"{api_url}{PATH}", "--source-id", "ONCALL-1"])
    out = capsys.readouterr().out
    assert code == 0, out
    # (its id is in the command's space, where the signature covers it)
    assert f"webhook-id {CLI_MESSAGE_ID_PREFIX}msg_" in out
    assert world.recall_count() == 2

    # Then the feed is still reported on the previous secret, and the next routine
    # rotation is refused
    assert feed_signer(SecretStore(caller="test")).sender_on_previous
    with pytest.raises(RotationFailed):
        driver.rotate(NAME)
    reset_identity_caches()
    assert _deliver(first, "CPSC-FEED-2") == 200


def test_webhook_send_reuses_an_id_given_in_its_own_space(world, api_url, capsys):
    """An id the command sent, given back whole or without its space, is the same id:
    sent again it is refused (409; here another event under it, stamped anew, which
    the retry the command suggests after a lost answer avoids with --file)."""
    from ops.cli import main

    url = f"{api_url}{PATH}"
    assert main(["webhook", "send", "--url", url, "--message-id", "msg_retry_1"]) == 0
    assert f"webhook-id {CLI_MESSAGE_ID_PREFIX}msg_retry_1 -> HTTP 200" in capsys.readouterr().out

    again = ["webhook", "send", "--url", url, "--message-id", f"{CLI_MESSAGE_ID_PREFIX}msg_retry_1"]
    assert main(again) == 1
    assert f"webhook-id {CLI_MESSAGE_ID_PREFIX}msg_retry_1 -> HTTP 409" in capsys.readouterr().out
    assert world.recall_count() == 1


def test_webhook_send_takes_the_longest_id_the_api_takes(world, api_url, capsys):
    from ops.cli import main

    own = "m" * LONGEST_OWN_PART
    assert MESSAGE_ID_PATTERN.fullmatch(CLI_MESSAGE_ID_PREFIX + own)
    code = main(["webhook", "send", "--url", f"{api_url}{PATH}", "--message-id", own])
    assert code == 0, capsys.readouterr()
    assert world.recall_count() == 1


@pytest.mark.parametrize(
    "message_id",
    [
        "m" * (LONGEST_OWN_PART + 1),
        CLI_MESSAGE_ID_PREFIX + "m" * (LONGEST_OWN_PART + 1),
        "m" * 257,
    ],
    ids=["one-past-the-limit", "whole-id-one-past-the-limit", "past-the-apis-own-limit"],
)
def test_webhook_send_refuses_a_message_id_the_api_refuses_before_reading_the_secret(
    world, monkeypatch, capsys, message_id
):
    """The API takes 1 to 256 printable ASCII characters (webhooks.MESSAGE_ID_PATTERN).
    A longer id would cost a read of the secret (in AWS a person's read raises the
    unexpected-secret-read alert), and the API's "401 Authentication is required."
    reads as a wrong secret: it is a usage error (exit 2) naming --message-id and
    its limit, before anything is read or sent."""
    import ops.webhook
    from ops.cli import main

    # The API refuses the whole id whatever the signature
    whole = message_id if message_id.startswith(CLI_MESSAGE_ID_PREFIX) else None
    body = recall_event(source_id="CPSC-LONG-ID")
    sent = whole or CLI_MESSAGE_ID_PREFIX + message_id
    assert post(body, signed_headers(world.webhook_secret, body, msg_id=sent)).status == 401

    reads: list[str] = []

    def read_secret() -> str:
        reads.append("AWSCURRENT")
        return str(world.webhook_secret)

    monkeypatch.setattr(ops.webhook, "current_secret", read_secret)
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    # (an address nothing listens on: whatever is sent goes nowhere)
    argv = ["webhook", "send", "--url", f"http://127.0.0.1:9{PATH}", "--message-id", message_id]
    code: object
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's refusal of an argument
        code = exited.code
    err = capsys.readouterr().err
    assert (code, reads) == (2, []), err
    assert "--message-id" in err
    assert f"at most {LONGEST_OWN_PART}" in err
