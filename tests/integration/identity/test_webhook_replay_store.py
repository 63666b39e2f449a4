"""The replay store's answer can be lost after DynamoDB applied the write (a dropped
connection, a read timeout, a 500 that still wrote). The client's retry then meets
its own claim: that is the claim succeeding, not a replay."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import recall_event


class _LosesFirstClaimAnswer(BaseHTTPRequestHandler):
    """Forwards to moto; the first webhook-id PutItem is applied, its answer dropped."""

    upstream: tuple[str, int]
    dropped: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(*self.upstream, timeout=10)
        headers = dict(self.headers.items())
        upstream.request("POST", self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        payload = answer.read()
        upstream.close()
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith(".PutItem") and b"webhook#" in body and not self.dropped:
            self.dropped.append(body)
            self.close_connection = True
            return  # moto wrote the item; the caller never hears so
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lossy_dynamodb(world, monkeypatch) -> Iterator[list[bytes]]:
    from functions.shared.settings import get_settings

    moto = urlsplit(get_settings().aws_endpoint_url or "")
    dropped: list[bytes] = []
    handler = type(
        "Handler",
        (_LosesFirstClaimAnswer,),
        {"upstream": (moto.hostname, moto.port), "dropped": dropped},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    get_settings.cache_clear()
    try:
        yield dropped
    finally:
        server.shutdown()
        server.server_close()


def test_a_claim_whose_answer_was_lost_is_still_ours(world, lossy_dynamodb):
    # Given a delivery whose webhook-id claim is written but its answer lost
    body = recall_event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_lost_answer")

    # When it is received
    response = post(body, headers)

    # Then the client's retry of the claim is not taken for a replay: stored once
    assert lossy_dynamodb, "the proxy did not drop a claim's answer"
    assert response.status == 200, response.body
    assert world.recall_count() == 1
    # and a real replay of the same message is still refused
    assert post(body, headers).status == 409


def test_a_release_removes_only_its_own_claim(identity_env):
    import time

    from functions.shared.identity.webhooks import (
        VerifiedWebhook,
        WebhookReplayed,
        claim_message_id,
        release_message_id,
    )

    # Given an id that a later delivery holds (an earlier claim's record expired)
    now = time.time()
    message = VerifiedWebhook("msg_two_claims", int(now))
    earlier = claim_message_id(message, now=now)
    later = claim_message_id(message, now=now + 10_000)
    # When the earlier delivery fails and releases its claim
    release_message_id(message, earlier)
    # Then the later delivery's claim still stands
    with pytest.raises(WebhookReplayed):
        claim_message_id(message, now=now + 10_000)
    # and its own release frees the id
    release_message_id(message, later)
    claim_message_id(message, now=now + 10_000)
