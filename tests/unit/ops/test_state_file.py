"""`.babyshield/local.json` is found from any folder of the checkout, as git finds `.git`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.local_state import STATE_FILE, find_state_file, read_state, write_state


def test_a_command_in_a_subfolder_finds_the_stack_started_at_the_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_state({"api_url": "http://127.0.0.1:8092"}, tmp_path / STATE_FILE)
    inner = tmp_path / "docs" / "deep"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert find_state_file() == (tmp_path / STATE_FILE).resolve()
    assert read_state() == {"api_url": "http://127.0.0.1:8092"}


def test_the_nearest_state_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state({"api_url": "outer"}, tmp_path / STATE_FILE)
    inner = tmp_path / "other-checkout"
    write_state({"api_url": "inner"}, inner / STATE_FILE)
    monkeypatch.chdir(inner)
    assert json.loads(find_state_file().read_text()) == {"api_url": "inner"}


def test_without_one_it_is_the_relative_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_state_file() == STATE_FILE
    assert read_state() is None
