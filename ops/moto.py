"""A moto server over HTTP on a free loopback port: the AWS of the local stack and the tests."""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.model_instances import reset_model_data
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

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


class OneCallAtATime:
    """A WSGI app that serves one AWS call at a time, as AWS applies each atomically.

    In AWS a conditional write (a rate-limit slot, a DynamoDB idempotency record)
    and a WAF IP-set update under its lock token are atomic. moto's backends take
    no lock: two calls served by two threads at once can both pass one condition
    (two callers taking the last rate-limit slot). Connections are still accepted
    in parallel; only the calls' work is serialised, so a call that waits inside
    moto (an SQS long poll) holds every other: callers poll short and wait on
    their side (ops/local_stack.py::OncallPrinter).

    After each call it also lets go of the model objects moto keeps for its
    dashboard (`/moto-api/data.json`, unused here): moto appends every model it
    ever creates to a list on the model's class, so each rate-limit update left an
    item copy behind for good, and a long `make run` or a load test grew without
    bound (and made each of the collector's full passes longer).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            body = self._app(environ, start_response)
            try:
                return list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
                reset_model_data()


def date_listed_secret_versions() -> None:
    """Have ListSecretVersionIds answer each version's own CreatedDate, as AWS does.

    moto answers the time of the call for every version, so on the local stack every
    secret looked made a moment ago: `babyshield secrets` showed every age as 0 and
    could not tell a rotated secret from one that was not. GetSecretValue's
    CreatedDate is right already; this makes the list agree with it.
    """
    from moto.secretsmanager.models import SecretsManagerBackend

    listed = SecretsManagerBackend.list_secret_version_ids
    if getattr(listed, "dates_each_version", False):
        return

    def with_version_dates(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> str:
        answer = json.loads(listed(self, secret_id, *args, **kwargs))
        versions = self.secrets[secret_id].versions
        for entry in answer.get("Versions", []):
            made = versions.get(entry.get("VersionId"), {}).get("createdate")
            if made is not None:
                entry["CreatedDate"] = made
        return json.dumps(answer)

    with_version_dates.dates_each_version = True  # type: ignore[attr-defined]
    SecretsManagerBackend.list_secret_version_ids = with_version_dates  # type: ignore[method-assign]


@contextmanager
def running_moto_server() -> Iterator[str]:
    """Start a moto server on a free loopback port; yields its endpoint URL.

    Every moto server in a process serves the same in-process backends, so a new
    server would see what an earlier one in this process created: it starts empty.
    """
    # werkzeug logs every AWS call at INFO: thousands of lines that say nothing.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    date_listed_secret_versions()
    app = OneCallAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        reset_moto(endpoint)
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
