"""`babyshield webhook send` whose answer was lost, resent the way it says to.

The command's hint named only the id: the resend built a new event from the
command's defaults (another recall altogether, unless every option was repeated),
stamped with the time of the resend. Once the id's replay record had expired (the
tolerance window and a minute), that event was stored: a demo recall, or the
newest version of the recall, undoing whatever the feed had stored since. Inside
the window it is another event under a received id. The hint now names a file
holding the exact body sent: the resend is the same event, stored once however
late it goes.
"""

from __future__ import annotations

import http.client
import http.server
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from functions.shared import names
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import client, recall_event

PATH = "/webhooks/recalls"


@dataclass
class LossyProxy:
    url: str
    bodies: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    answers_to_lose: int = 1


@pytest.fixture(autouse=True)
def _saved_events_in_tmp_path(tmp_path, monkeypatch) -> None:
    """The command keeps a body whose answer was lost in a temporary file: here, not /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _lossy_front(host: str, port: int, state: LossyProxy) -> http.server.ThreadingHTTPServer:
    """A proxy to host:port that forwards every delivery and loses the first answers."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.bodies.append(body)
            state.ids.append(self.headers["webhook-id"])
            conn = http.client.HTTPConnection(host, port, timeout=15)
            try:
                conn.request("POST", self.path, body=body, headers=dict(self.headers))
                answer = conn.getresponse()
                status, text = answer.status, answer.read()
            finally:
                conn.close()
            if state.answers_to_lose > 0:
                state.answers_to_lose -= 1
                return  # the connection closes with no answer: stored, never told
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def proxy(world) -> Iterator[LossyProxy]:
    """The real API handler, as `make run` serves it, behind the lossy proxy."""
    from ops.local_server import api_handler
    from tests.support.local_server import serve

    for server in serve(api_handler()):
        state = LossyProxy(url="")
        front = _lossy_front("127.0.0.1", int(server.server_address[1]), state)
        thread = threading.Thread(target=front.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        state.url = f"http://127.0.0.1:{front.server_address[1]}{PATH}"
        try:
            yield state
        finally:
            front.shutdown()
            front.server_close()


def _send_losing_the_answer(proxy: LossyProxy, capsys) -> list[str]:
    """On-call's send, stored by the API with its answer lost; the arguments the
    command's hint says to resend with."""
    from ops.cli import main

    code = main(
        ["webhook", "send", "--url", proxy.url, "--source-id", "ONCALL-LATE", "--hazard", "Old"]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert "may or may not have been applied" in err
    hint = err.split("next:", 1)[1]
    flags = re.findall(r"(--file|--message-id) (\S+)", hint)
    assert flags, hint
    return [part.rstrip(":,;.") for flag in flags for part in flag]


def _stored_hazard(world) -> str:
    return str(world.query("SELECT hazard FROM recalls WHERE source_id = 'ONCALL-LATE'")[0][0])


def test_a_late_resend_as_the_hint_says_does_not_undo_a_newer_feed_update(world, proxy, capsys):
    from ops.cli import main

    # Given on-call's delivery, stored by the API with its answer lost
    resend = _send_losing_the_answer(proxy, capsys)
    assert _stored_hazard(world) == "Old"
    # and a newer version of the recall the feed sent since
    newer = recall_event(source_id="ONCALL-LATE", hazard="Newer, from the feed")
    assert post(newer, signed_headers(world.webhook_secret, newer)).status == 200
    # and the id's replay record expired (the tolerance window and its margin passed)
    client("dynamodb").update_item(
        TableName=names.WEBHOOK_NONCE_TABLE,
        Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": f"webhook#{proxy.ids[0]}"}},
        UpdateExpression="SET #ttl = :past",
        ExpressionAttributeNames={"#ttl": names.TTL_ATTRIBUTE},
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    # When on-call resends it as the hint says
    code = main(["webhook", "send", "--url", proxy.url, *resend])
    out = capsys.readouterr().out

    # Then the same delivery went again, an old version now: the feed's update stays
    # and nothing else is stored
    assert code == 0, out
    assert world.query("SELECT source_id, hazard FROM recalls") == [
        ("ONCALL-LATE", "Newer, from the feed")
    ]
    assert proxy.ids[1] == proxy.ids[0]
    assert proxy.bodies[1] == proxy.bodies[0]


def test_a_prompt_resend_as_the_hint_says_is_a_plain_replay(world, proxy, capsys):
    from ops.cli import main

    resend = _send_losing_the_answer(proxy, capsys)

    code = main(["webhook", "send", "--url", proxy.url, *resend])
    out = capsys.readouterr().out

    # The same event under the same id: refused as received, not as another event
    assert code == 1
    assert "-> HTTP 409" in out
    assert "already received" in out
    assert proxy.bodies[1] == proxy.bodies[0]
    assert world.recall_count() == 1
