"""`babyshield webhook send`: what it signs verifies with the Standard Webhooks library."""

from __future__ import annotations

import json

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
    assert code == 1
    assert "whsec_" in err
    assert "Traceback" not in err


def test_non_http_url_is_refused(capsys):
    secret = json.loads(generate_webhook_secret_value())["secret"]
    code = main(["webhook", "send", "--url", "file:///etc/passwd", "--secret", secret])
    assert code == 1
    assert "http" in capsys.readouterr().err
