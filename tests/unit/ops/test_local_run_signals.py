"""`babyshield local` (what `make run` runs) stops as cleanly on SIGTERM (a CI runner,
`kill`) and SIGHUP (its terminal closed) as on Ctrl-C: the stack's exit runs, which
removes the state file and stops an embedded PostgreSQL. After a hangup the terminal
is gone, and writing to it must not stop that exit from running."""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import ops.local
import ops.local_stack
from ops.cli import main


class ClosedTerminal:
    """What a process's stdout does once its terminal hung up."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")

    def flush(self) -> None:
        raise OSError(errno.EIO, "Input/output error")


@pytest.fixture(autouse=True)
def _own_signals_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    # Without a handler of the command's own, SIGHUP would end this test process.
    def unhandled(signum: int, frame: Any) -> None:
        raise RuntimeError(f"babyshield local left {signal.Signals(signum).name} unhandled")

    signal.signal(signal.SIGHUP, unhandled)
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_signal_stops_the_stack_through_its_exit(
    sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = threading.Event()
    exits: list[str] = []

    @contextmanager
    def stack(options: Any) -> Iterator[dict[str, Any]]:
        running.set()
        try:
            yield {}
        finally:
            exits.append("stack exited")

    monkeypatch.setattr(ops.local_stack, "local_stack", stack)
    monkeypatch.setattr(ops.local, "banner", lambda state: "up")
    monkeypatch.setattr(ops.local, "farewell", lambda state: "bye")

    def hang_up() -> None:
        assert running.wait(10)
        if sig is signal.SIGHUP:
            monkeypatch.setattr(sys, "stdout", ClosedTerminal())
        os.kill(os.getpid(), sig)

    sender = threading.Thread(target=hang_up)
    sender.start()
    code = main(["local", "--port", "0"])
    sender.join()

    assert code == 0
    assert exits == ["stack exited"]
