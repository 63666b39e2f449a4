"""The `babyshield` command goes to the region on-call's shell names, however it names
it: AWS_REGION, AWS_DEFAULT_REGION or the profile's `region`, as every AWS tool reads it.
The stack may be deployed to any region (`-c babyshield:region=...`, cdk/config.py),
and a command sent to us-east-1 by default would find no registry there, or another
deployment's."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.shared import aws_clients, blocks
from ops.cli import main
from ops.waf import ensure_local_resources
from tests.support.waf import clear_caches

DEPLOYED = "eu-west-1"


@pytest.fixture
def block_in_eu_west_1(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's WAF resources and one block in eu-west-1; then AWS_REGION unset."""
    monkeypatch.setenv("AWS_REGION", DEPLOYED)
    monkeypatch.delenv("ONCALL_TOPIC_ARN", raising=False)
    clear_caches()
    for name, value in ensure_local_resources("").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ONCALL_TOPIC_ARN", raising=False)
    clear_caches()
    blocks.block(["203.0.113.7"], reason="scan", duration_seconds=3600, actor="alice")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clear_caches()


def _listed(capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(["waf", "list", "--json"])
    finally:
        clear_caches()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_aws_default_region_names_the_region(
    block_in_eu_west_1: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEPLOYED)
    assert "203.0.113.7/32" in _listed(capsys)


def test_the_profiles_region_names_the_region(
    block_in_eu_west_1: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    config.write_text(f"[profile oncall]\nregion = {DEPLOYED}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "oncall")
    # The process's botocore session read the config files when this test process
    # made it; a command's process makes its own, after the shell set them.
    monkeypatch.setattr(aws_clients, "_session", None)
    assert "203.0.113.7/32" in _listed(capsys)


def test_aws_region_still_wins_over_the_default_region(
    block_in_eu_west_1: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """AWS_REGION is what Lambda and the SDKs take first: a shell with both goes there."""
    monkeypatch.setenv("AWS_REGION", DEPLOYED)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    assert "203.0.113.7/32" in _listed(capsys)
