"""`babyshield audit` run twice against the local stack: the second run, whose requests
the spent audit key gets refused with 429, must not report what it did not test."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ops.cli import main
from tests.support.local_stack import running_stack


@pytest.fixture
def stack(pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.chdir(tmp_path)  # .babyshield/local.json goes here
    with running_stack(pg_cluster) as state:
        yield state


def audit(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["audit", "--url", url, "--json", "--no-aws"])
    # The API runs in this process and logs to the same stdout: take the report only.
    out = capsys.readouterr().out
    checks = json.loads(out[out.index('{\n  "checks"') :])["checks"]
    return code, {c["name"]: c for c in checks}


def test_second_audit_within_the_key_window_is_not_a_pass(stack, capsys, monkeypatch):
    # Given a key window long enough that both runs fall in the same one
    from functions.shared.identity import rate_limit

    monkeypatch.setattr(
        rate_limit,
        "FixedWindowRateLimiter",
        functools.partial(rate_limit.FixedWindowRateLimiter, window_seconds=3600),
    )
    # And a first audit that spent the audit key's limit with its own requests
    code, first = audit(stack["api_url"], capsys)
    assert code == 0, first
    assert first["rate_limiting"]["status"] == "PASS"
    assert first["xss_probes"]["status"] == "PASS"

    # When the audit runs again
    code, second = audit(stack["api_url"], capsys)

    # Then the checks the key's 429 answered were not performed, and the exit says so
    assert code == 1
    for name in ("sql_injection_probes", "xss_probes", "rate_limiting"):
        assert second[name]["status"] == "FAIL", second[name]
        assert second[name]["detail"].startswith("not performed:"), second[name]
    # And the checks that never used the key still ran
    assert second["security_headers"]["status"] == "PASS"
    assert second["authentication_required"]["status"] == "PASS"


@pytest.mark.parametrize(
    "credential",
    [
        ["--api-key", "bs_0000000000000000_notARealKeyAtAll0000000000000000"],
        ["--token", "not.a.token"],
    ],
    ids=["refused-api-key", "refused-token"],
)
def test_probes_the_api_refused_the_audits_credentials_for_are_not_a_pass(
    stack, capsys, credential: list[str]
):
    """Identity comes before attack inspection: with a key or token the API refuses,
    every probe is a 401 that never reached the search. That used to PASS as
    "probes rejected or harmless (statuses [401])"."""
    code = main(["audit", "--url", stack["api_url"], "--json", "--no-aws", *credential])
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(out[out.index('{\n  "checks"') :])["checks"]}

    assert code == 1
    for name in ("sql_injection_probes", "xss_probes"):
        assert checks[name]["status"] == "FAIL", checks[name]
        assert checks[name]["detail"].startswith("not performed:"), checks[name]
        assert "--api-key/--token" in checks[name]["detail"]
    assert checks["security_headers"]["status"] == "PASS"
