"""`babyshield webhook send`: sign a recall event and POST it, as the upstream feed would.

The signature is the Standard Webhooks one (functions.shared.identity.webhooks.sign),
so what this sends is what any spec-conformant sender sends. The secret comes from
`--secret`, else $WEBHOOK_SECRET, else the webhook secret's AWSCURRENT version in
Secrets Manager (the local stack's moto server when AWS_ENDPOINT_URL points at it).

Every webhook-id it sends is in the `babyshield-cli_` space, which the signature
covers: the API does not take on-call's delivery, signed with AWSCURRENT, for the
feed switching to it (the rotation guard and the feed-on-previous-secret alarm).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ops.console import NO_CREDENTIALS_HINT, CommandError, UsageError, cli_caller, is_http_url

WEBHOOK_PATH = "/webhooks/recalls"
# Where `make run` serves when nothing says otherwise (no running stack to ask).
DEFAULT_URL = f"http://127.0.0.1:8080{WEBHOOK_PATH}"


def signed_request(
    secret: str, body: bytes, *, message_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a signed webhook delivery; `message_id` is sent as given (the
    command passes one in its own space, `cli_message_id`)."""
    from functions.shared.identity.webhooks import decode_secret, sign

    msg_id = message_id or f"msg_{uuid.uuid4().hex}"
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": sign(decode_secret(secret), msg_id, moment, body),
    }


def cli_message_id(own: str) -> str:
    """The webhook-id the command sends for `own`: in CLI_MESSAGE_ID_PREFIX's space,
    which the signature covers, so the API does not take on-call's delivery for the
    feed's (webhook_signers.record_secret_use). An id given whole stays as it is."""
    from functions.shared.identity.webhook_signers import CLI_MESSAGE_ID_PREFIX

    return own if own.startswith(CLI_MESSAGE_ID_PREFIX) else CLI_MESSAGE_ID_PREFIX + own


def _message_id(value: str) -> str:
    """A webhook-id the API takes (webhooks.MESSAGE_ID_PATTERN, once in the command's
    space), checked before the secret is read or anything sent."""
    from functions.shared.identity.webhook_signers import CLI_MESSAGE_ID_PREFIX
    from functions.shared.identity.webhooks import MESSAGE_ID_MAX_LENGTH, MESSAGE_ID_PATTERN

    sent = cli_message_id(value)
    if not value or not MESSAGE_ID_PATTERN.fullmatch(sent):
        room = MESSAGE_ID_MAX_LENGTH - len(CLI_MESSAGE_ID_PREFIX)
        raise argparse.ArgumentTypeError(
            f"at most {room} printable ASCII characters, no spaces (e.g. msg_test_1): it "
            f"is sent as {CLI_MESSAGE_ID_PREFIX}ID, and the API takes ids of at most "
            f"{MESSAGE_ID_MAX_LENGTH}"
        )
    return sent


def _own_part(message_id: str) -> str:
    """`message_id` without the command's space, as --message-id takes it back."""
    from functions.shared.identity.webhook_signers import CLI_MESSAGE_ID_PREFIX

    return message_id.removeprefix(CLI_MESSAGE_ID_PREFIX)


def _recall_date(value: str) -> str:
    """A date as the API takes it (YYYY-MM-DD only), checked before anything is signed
    and sent; the API's own range check still applies."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != value:
        raise argparse.ArgumentTypeError("a date written YYYY-MM-DD, e.g. 2026-03-01")
    return value


def recall_event(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        try:
            document: dict[str, Any] = json.loads(Path(args.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            # No secret read, nothing sent: a refused argument (exit 2), as a bad --url is.
            raise UsageError(
                f"cannot read an event from {args.file}: {exc}",
                hint="--file takes a file holding one JSON event, as the feed sends it",
            ) from exc
        return document
    return {
        "type": args.type,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "source_id": args.source_id,
            "product": args.product,
            "brand": args.brand,
            "hazard": args.hazard,
            "remedy": args.remedy,
            "recall_date": args.recall_date or date.today().isoformat(),
        },
    }


def current_secret() -> str:
    import boto3

    from functions.shared.rotation.audit import audit_secret_read
    from functions.shared.settings import get_settings

    settings = get_settings()
    # The local stack's moto server accepts any credentials; a fresh shell has none.
    local = _is_loopback(settings.aws_endpoint_url) and not os.environ.get("AWS_ACCESS_KEY_ID")
    try:
        client = boto3.client(
            "secretsmanager",
            region_name=settings.region,
            endpoint_url=settings.aws_endpoint_url,
            # "local" is a placeholder moto accepts, only sent to a loopback endpoint;
            # elsewhere boto3 finds the shell's real credentials itself.
            aws_access_key_id="local" if local else None,
            aws_secret_access_key="local" if local else None,  # pragma: allowlist secret
        )
        # The stage is explicit (docs/ROTATION.md, "Known limits"): without it a
        # rotated secret may answer with the version current before the promotion.
        answer = client.get_secret_value(
            SecretId=settings.webhook_secret_id, VersionStage="AWSCURRENT"
        )
        secret = str(json.loads(answer["SecretString"])["secret"])
    except Exception as exc:
        raise _unreadable_secret(settings.webhook_secret_id, exc) from exc
    # As every other read of a secret value: who read which version, never the value.
    audit_secret_read(
        settings.webhook_secret_id, "AWSCURRENT", cli_caller(), answer.get("VersionId")
    )
    return secret


def _unreadable_secret(secret_id: str, error: Exception) -> CommandError:
    """Why the webhook secret could not be read (AWS's error code or the error's type,
    never a message, which may quote a value), and what to do. The command finds the
    running local stack itself (.babyshield/local.json): starting it is enough."""
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    from functions.shared.aws_clients import error_code

    why = error_code(error) or type(error).__name__
    if isinstance(error, NoCredentialsError):
        hint = (
            "start the local stack with `make run` (this command finds it); for AWS "
            + NO_CREDENTIALS_HINT
        )
    elif isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        hint = "start the local stack with `make run`, or check AWS_ENDPOINT_URL and the network"
    else:
        hint = "check the secret, and that your role may read it"
    return CommandError(
        f"cannot read the webhook secret {secret_id} ({why})",
        hint=f"{hint}; or pass --secret whsec_...",
    )


def _is_loopback(url: str | None) -> bool:
    from urllib.parse import urlparse

    return bool(url) and urlparse(url).hostname in {"127.0.0.1", "localhost", "::1"}


def default_url() -> str:
    """The running local stack's webhook endpoint (it may serve on any port), else
    DEFAULT_URL."""
    from ops.local_state import running_state

    api_url = (running_state() or {}).get("api_url")
    if isinstance(api_url, str) and api_url.startswith(("http://", "https://")):
        return f"{api_url.rstrip('/')}{WEBHOOK_PATH}"
    return DEFAULT_URL


def _run(args: argparse.Namespace) -> int:
    if args.url is None:
        args.url = default_url()
    # Arguments first: a typo must not cost a read of the secret (in AWS, a read from a
    # shell raises the unexpected-secret-read alert).
    if not is_http_url(args.url):
        raise UsageError(
            f"--url is not an http(s) URL: {args.url!r}",
            hint=f"e.g. --url {DEFAULT_URL}",
        )
    body = json.dumps(recall_event(args), separators=(",", ":")).encode()
    secret = args.secret or os.environ.get("WEBHOOK_SECRET") or current_secret()
    try:
        headers = signed_request(
            secret, body, message_id=args.message_id or cli_message_id(f"msg_{uuid.uuid4().hex}")
        )
    except ValueError as exc:
        refusal = UsageError if args.secret else CommandError
        raise refusal(
            f"the secret is not a usable whsec_ secret ({exc})",
            hint="pass the webhook secret's value as Secrets Manager holds it: "
            "whsec_ then the base64 of a key of at least 16 bytes",
        ) from exc
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        args.url, data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # nosec B310 - scheme checked
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    except urllib.error.URLError as error:
        raise CommandError(
            f"cannot reach {args.url}: {error.reason}", hint="is the API running (`make run`)?"
        ) from error
    except (OSError, http.client.HTTPException) as error:
        # Connected, then no answer: the connection dropped or the 10 s ran out
        # (urlopen passes these on unwrapped). The API may have applied it.
        raise CommandError(
            f"no answer from {args.url} ({type(error).__name__}): the delivery may or may "
            "not have been applied",
            hint=_resend_hint(body, headers["webhook-id"]),
        ) from error
    print(f"webhook-id {headers['webhook-id']} -> HTTP {status}")
    print(text)
    return 0 if 200 <= status < 300 else 1


def _resend_hint(body: bytes, message_id: str) -> str:
    """How to send the same delivery again: its id and its exact event, kept in a file.

    An event built anew would carry the command's defaults and the time of the
    resend: another event under the id (refused while the API holds the id), and
    once the id's record expired, stored as the newest version, over whatever the
    feed stored since. The same event is a replay, or later its own version again.
    """
    import shlex
    import tempfile

    resend = f"--message-id {shlex.quote(_own_part(message_id))}"
    try:
        handle, path = tempfile.mkstemp(prefix="babyshield-webhook-", suffix=".json")
        with os.fdopen(handle, "wb") as saved:
            saved.write(body)
    except OSError:
        return (
            f"send the same event again, as a JSON file with --file, and {resend}: an "
            "event already stored is then refused as a replay, not stored twice"
        )
    return (
        f"send it again with --file {shlex.quote(path)} {resend}: the same event, so one already "
        "stored is refused as a replay, or later taken as the version it is, never "
        "over a newer one"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "webhook",
        help="send signed recall webhooks",
        description="Sign a recall event with the webhook secret (Standard Webhooks) and "
        "POST it, as the upstream feed does: to the running local stack by default.",
    )
    commands = parser.add_subparsers(dest="webhook_command", metavar="COMMAND", required=True)
    send = commands.add_parser("send", help="sign a recall event and POST it")
    send.add_argument(
        "--url",
        help=f"where to POST (default: the running local stack's {WEBHOOK_PATH}, "
        f"else {DEFAULT_URL})",
    )
    send.add_argument("--secret", help="whsec_... (default: $WEBHOOK_SECRET or Secrets Manager)")
    send.add_argument("--file", help="a JSON event to send as is")
    send.add_argument(
        "--message-id",
        type=_message_id,
        help="webhook-id, sent as babyshield-cli_ID so that the API does not take it for "
        "the feed's (default: a fresh one). Reuse it with --file to send the same event "
        "again (a replay: 409); another event under it is refused as a reused id",
    )
    send.add_argument(
        "--type", default="recall.created", choices=["recall.created", "recall.updated"]
    )
    send.add_argument("--source-id", default="DEMO-WEBHOOK-001")
    send.add_argument("--product", default="Travel crib")
    send.add_argument("--brand", default="NapWell")
    send.add_argument("--hazard", default="Side rail can detach; entrapment hazard")
    send.add_argument("--remedy", default="Stop using; free repair kit")
    send.add_argument("--recall-date", type=_recall_date, help="YYYY-MM-DD (default: today)")
    send.set_defaults(func=_run)
