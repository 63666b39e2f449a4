"""The local server (ops/local_server.py) on a free loopback port, for its tests."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ops.local_server import LocalApiServer


def serve(handler: Any, *, quiet: bool = True, **options: Any) -> Iterator[LocalApiServer]:
    """A server in its own thread for as long as the caller iterates (`for srv in ...`,
    or `yield from` in a fixture); shut down and closed after."""
    srv = LocalApiServer(("127.0.0.1", 0), handler, quiet=quiet, **options)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, from `source` when given (any 127/8 address
    is this machine's): the status, the headers and the whole body."""
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()
