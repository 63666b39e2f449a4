"""The local server (ops/local_server.py) on a free loopback port, for its tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
