"""A clock a test sets by hand, and pinning the API's rate limiters to one."""

from __future__ import annotations

import pytest


class ManualClock:
    """Reads `now`, which the test moves."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def pin_limiter_clock(monkeypatch: pytest.MonkeyPatch, now: float) -> ManualClock:
    """Make every FixedWindowRateLimiter the API builds read a ManualClock at `now`:
    the limiter takes its clock as a keyword default, which the API never passes."""
    from functions.shared.identity import rate_limit

    clock = ManualClock(now)
    defaults = dict(rate_limit.FixedWindowRateLimiter.__init__.__kwdefaults__ or {})
    defaults["clock"] = clock
    monkeypatch.setattr(rate_limit.FixedWindowRateLimiter.__init__, "__kwdefaults__", defaults)
    return clock
