"""Lambda code assets: contents, content addressing and cache pruning."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cdk import assets


@pytest.fixture
def source_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """functions/ with shared code and two neighbouring packages, and a build cache."""
    functions = tmp_path / "functions"
    for package in ("shared", "alpha", "beta"):
        (functions / package).mkdir(parents=True)
        (functions / package / "__init__.py").write_text(f'"""{package}"""\n')
        (functions / package / "__pycache__").mkdir()
        (functions / package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (functions / "__init__.py").write_text("")
    monkeypatch.setattr(assets, "FUNCTIONS_DIR", functions)
    monkeypatch.setattr(assets, "BUILD_ROOT", tmp_path / "build")
    return functions


def test_code_dir_holds_shared_code_and_its_own_package_only(source_tree: Path):
    directory, _ = assets.function_code_dir("alpha")

    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())

    assert files == [
        "functions/__init__.py",
        "functions/alpha/__init__.py",
        "functions/shared/__init__.py",
    ]


def test_editing_shared_code_gives_a_new_asset(source_tree: Path):
    first, first_hash = assets.function_code_dir("alpha")
    again, again_hash = assets.function_code_dir("alpha")

    (source_tree / "shared" / "__init__.py").write_text('"""changed"""\n')
    changed, changed_hash = assets.function_code_dir("alpha")

    assert (again, again_hash) == (first, first_hash)
    assert changed_hash != first_hash
    assert (changed / "functions" / "shared" / "__init__.py").read_text() == '"""changed"""\n'


def test_editing_a_neighbour_does_not_change_the_asset(source_tree: Path):
    _, before = assets.function_code_dir("alpha")

    (source_tree / "beta" / "__init__.py").write_text('"""edited"""\n')
    _, after = assets.function_code_dir("alpha")

    assert after == before


def test_day_old_builds_of_the_same_function_are_pruned(source_tree: Path):
    old, _ = assets.function_code_dir("alpha")
    neighbour, _ = assets.function_code_dir("beta")
    day_ago = time.time() - assets.STALE_BUILD_SECONDS - 60
    for directory in (old, neighbour):
        os.utime(directory, (day_ago, day_ago))

    (source_tree / "alpha" / "__init__.py").write_text('"""v2"""\n')
    current, _ = assets.function_code_dir("alpha")

    assert current.is_dir()
    assert not old.exists()
    assert neighbour.is_dir()


def test_unknown_package_is_refused(source_tree: Path):
    with pytest.raises(FileNotFoundError, match="no such function"):
        assets.function_code_dir("gamma")
