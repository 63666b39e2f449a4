"""`babyshield audit --url http://localhost:8080` audits the running local stack as
`--url http://127.0.0.1:8080` does: with its audit key and its AWS side. Before, only the
exact string of the state file matched, and `localhost` skipped the rate-limit, secret,
database and WAF checks with "no AWS access: ... or audit the running local stack"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.audit import local_defaults
from ops.local_state import STATE_FILE, write_state

AUDIT_KEY = {"key": "bs_example", "purpose": "audit"}  # pragma: allowlist secret


@pytest.fixture
def stack_on_8080(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_state(
        {"api_url": "http://127.0.0.1:8080", "api_keys": [AUDIT_KEY]}, tmp_path / STATE_FILE
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/",
        "http://localhost:8080",
        "http://LOCALHOST:8080/",
    ],
)
def test_the_stacks_own_api_gets_its_defaults(stack_on_8080: None, url: str) -> None:
    assert local_defaults(url).get("api_keys") == [AUDIT_KEY]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8081",
        "http://127.0.0.2:8080",
        "https://localhost:8080",
        "http://localhost:8080/prod",
        "http://example.com:8080",
    ],
)
def test_another_api_gets_none(stack_on_8080: None, url: str) -> None:
    assert local_defaults(url) == {}
