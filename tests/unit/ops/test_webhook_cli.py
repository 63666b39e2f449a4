"""`babyshield webhook send`: what it signs verifies with the Standard Webhooks library."""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from functions.shared.identity.webhooks import generate_webhook_secret_value
from ops.cli import main
from ops.webhook import signed_request


def test_signed_request_verifies_with_the_reference_library():
    secret = json.loads(generate_webhook_secret_value())["secret"]
    body = b'{"type":"recall.created"}'
    headers = signed_request(secret, body, message_id="msg_cli")
    assert Webhook(secret).verify(body, headers) == {"type": "recall.created"}
    assert headers["webhook-id"] == "msg_cli"


def test_unreachable_api_is_a_clear_error(capsys):
    secret = json.loads(generate_webhook_secret_value())["secret"]
    code = main(
        ["webhook", "send", "--url", "http://127.0.0.1:9/webhooks/recalls", "--secret", secret]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach" in err
    assert "Traceback" not in err


def test_bad_secret_is_a_clear_error(capsys):
    code = main(["webhook", "send", "--secret", "whsec_***"])
    err = capsys.readouterr().err
    assert code == 2  # an argument refused: nothing was sent
    assert "whsec_" in err
    assert "Traceback" not in err


def test_non_http_url_is_refused(capsys):
    secret = json.loads(generate_webhook_secret_value())["secret"]
    code = main(["webhook", "send", "--url", "file:///etc/passwd", "--secret", secret])
    assert code == 2
    assert "http" in capsys.readouterr().err


def test_without_url_it_posts_to_the_running_local_stack(monkeypatch, capsys):
    """Protects `make run` on another port (PORT=9090): the default follows the stack's
    own api_url in .babyshield/local.json, not a fixed 127.0.0.1:8080."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import ops.local_state

    received: list[str] = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    # Given a running stack whose API is on a port other than 8080
    server = HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(ops.local_state, "running_state", lambda *_: {"api_url": api_url})
    # (The stack's AWS environment is not needed: the secret is given.)
    monkeypatch.setattr(ops.local_state, "apply_local_environment", lambda **_: False)
    secret = json.loads(generate_webhook_secret_value())["secret"]
    try:
        # When a webhook is sent without --url
        code = main(["webhook", "send", "--secret", secret])
    finally:
        server.shutdown()
        server.server_close()

    # Then it reached that stack's webhook endpoint
    assert code == 0, capsys.readouterr().err
    assert received == ["/webhooks/recalls"]
    assert "HTTP 202" in capsys.readouterr().out


def test_without_a_running_stack_the_default_is_the_make_run_port(monkeypatch):
    import ops.local_state
    from ops.webhook import DEFAULT_URL, default_url

    monkeypatch.setattr(ops.local_state, "running_state", lambda *_: None)
    assert default_url() == DEFAULT_URL == "http://127.0.0.1:8080/webhooks/recalls"


def test_url_has_a_help_text(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["webhook", "send", "--help"])
    help_text = capsys.readouterr().out
    assert "--url URL" in help_text
    assert "running local stack" in help_text


@pytest.mark.parametrize("value", ["yesterday", "2026-3-1", "20260301", "2026-02-30"])
def test_a_recall_date_that_is_no_date_is_refused_before_sending(capsys, value):
    """`--recall-date yesterday` was signed and sent, and the API answered 422."""
    secret = json.loads(generate_webhook_secret_value())["secret"]
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "webhook",
                "send",
                "--url",
                "http://127.0.0.1:9/x",
                "--secret",
                secret,
                "--recall-date",
                value,
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "YYYY-MM-DD" in err
    assert "cannot reach" not in err


def test_a_secret_with_the_prefix_but_no_key_says_what_a_secret_is(capsys):
    """`--secret whsec_garbage` was told it is "not a whsec_ secret", though it is one."""
    code = main(["webhook", "send", "--secret", "whsec_garbage!"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a usable whsec_ secret" in err
    assert "at least 16 bytes" in err


def test_a_bad_url_is_refused_before_the_secret_is_read(capsys, monkeypatch):
    """The URL was checked after the secret was read from Secrets Manager: in AWS that
    read from a shell raises the unexpected-secret-read alert, for a typo."""
    import ops.webhook

    def must_not_read() -> str:
        raise AssertionError("the secret was read")

    monkeypatch.setattr(ops.webhook, "current_secret", must_not_read)
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    code = main(["webhook", "send", "--url", "ftp://example/x"])
    assert code == 2
    assert "--url is not an http(s) URL" in capsys.readouterr().err
