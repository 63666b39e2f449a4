"""A loopback TCP proxy that a test can cut: "the database is down" without stopping it.

The shared PostgreSQL cluster serves every test of the session, so it cannot be
stopped for one fault. The secrets point at this proxy instead; `down()` closes
every proxied connection and refuses new ones, `up()` lets them through again.
A subclass may look at or hold back the traffic (`relay`).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from typing import Any


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._up = threading.Event()
        self._up.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def down(self) -> None:
        self._up.clear()
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def up(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            state: dict[str, Any] = {}
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pipe, args=(source, sink, upstream, state), daemon=True
                ).start()

    def relay(
        self, data: bytes, sink: socket.socket, *, upstream: bool, state: dict[str, Any]
    ) -> bool:
        """Pass `data` on (`upstream`: client to server); False ends the connection.
        `state` is shared by the connection's two directions."""
        sink.sendall(data)
        return True

    def _pipe(
        self, source: socket.socket, sink: socket.socket, upstream: bool, state: dict[str, Any]
    ) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or not self.relay(data, sink, upstream=upstream, state=state):
                    break
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
