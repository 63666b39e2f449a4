"""Timing for growth checks: ratios of one machine's times within one test, never an
absolute time (the machine is shared)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], rounds: int = 5) -> float:
    """The fastest of `rounds` calls, in seconds: the least disturbed by neighbours."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
