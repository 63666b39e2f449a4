"""A moto server over HTTP on a free loopback port: the AWS of the local stack and the tests."""

from __future__ import annotations

import logging
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def use_fake_credentials() -> None:
    """Never let a local run or a test reach a real account, whatever the shell has."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"  # noqa: S105  # pragma: allowlist secret
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION


def reset_moto(endpoint: str) -> None:
    """Drop every resource moto holds. Its backends are per process, not per server:
    a second server in one process (tests, an in-process restart) starts with the
    first one's state unless it is reset."""
    # urlopen also opens file: and custom schemes; only an HTTP(S) endpoint is ever reset.
    if urllib.parse.urlsplit(endpoint).scheme not in {"http", "https"}:
        raise ValueError(f"the moto endpoint must be http(s): {endpoint!r}")
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # nosec B310 - http(s) checked above
        response.read()


@contextmanager
def running_moto_server() -> Iterator[str]:
    """Start a moto server on a free loopback port; yields its endpoint URL.

    Every moto server in a process serves the same in-process backends, so a new
    server would see what an earlier one in this process created: it starts empty.
    """
    # werkzeug logs every AWS call at INFO: thousands of lines that say nothing.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        reset_moto(endpoint)
        yield endpoint
    finally:
        server.stop()
