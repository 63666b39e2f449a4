"""The environment `babyshield` sets for a run against the local stack."""

from __future__ import annotations

import pytest


def set_local_cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the command sets for a local run, set through monkeypatch so the test undoes
    it: local mode, no metrics output, warnings only, and no cached secret values
    (each rotation step must read what the one before wrote)."""
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("SECRET_CACHE_SECONDS", "0")
