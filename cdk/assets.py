"""Lambda assets built on this machine, without Docker.

Two kinds of directory, each content-addressed under `.babyshield/cdk-build/`:

* one dependency layer: `requirements/runtime.lock` installed with pip for the
  Lambda platform (`--platform manylinux... --only-binary=:all:`), so a wheel
  built for this machine can never slip in. Built once per lock file and reused
  by every later synth, which keeps repeated synths fast;
* one code directory per function: `functions/__init__.py`, `functions/shared/`
  and the function's own package, never its neighbours'.

A directory is built in a temporary sibling and renamed into place, so two
synths running at once (a test session and `make synth`) never see half a build.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / ".babyshield" / "cdk-build"
RUNTIME_LOCK = REPO_ROOT / "requirements" / "runtime.lock"
FUNCTIONS_DIR = REPO_ROOT / "functions"

# Must match the Lambda runtime and architecture chosen in cdk/functions.py.
LAMBDA_PYTHON_VERSION = "3.14"
LAMBDA_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")

STALE_BUILD_SECONDS = 24 * 3600

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def _digest(parts: Iterable[bytes]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "big"))
        sha.update(part)
    return sha.hexdigest()[:20]


def _publish(build: Path, target: Path, stale_pattern: str) -> None:
    """Move a finished build into place; a concurrent synth that won the race is kept.

    Builds matching `stale_pattern` that nobody has published for a day are
    removed, so the cache does not grow with every edit. A day, not at once: a
    synth of an older checkout may still be reading one.
    """
    try:
        build.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(build, ignore_errors=True)
    cutoff = time.time() - STALE_BUILD_SECONDS
    for old in target.parent.glob(stale_pattern):
        if old != target and old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def dependency_layer_dir(lock_file: Path = RUNTIME_LOCK) -> tuple[Path, str]:
    """A directory with `python/` holding the locked dependencies, and its hash."""
    key = _digest(
        [lock_file.read_bytes(), LAMBDA_PYTHON_VERSION.encode(), *map(str.encode, LAMBDA_PLATFORMS)]
    )
    target = BUILD_ROOT / f"deps-{key}"
    if target.is_dir():
        return target, key
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".deps-", dir=BUILD_ROOT))
    build.chmod(0o755)  # mkdtemp's 0700 would travel into the asset
    platform_args = [arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--require-hashes",
        "--requirement",
        str(lock_file),
        *platform_args,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(build / "python"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise RuntimeError(
            f"building the Lambda dependency layer failed ({' '.join(command)}):\n{result.stderr}"
        )
    _publish(build, target, "deps-*")
    return target, key


def function_code_dir(package: str, extra: Mapping[str, Path] | None = None) -> tuple[Path, str]:
    """The code asset of `functions/<package>`: shared code, the package, `extra` dirs.

    `extra` maps a destination inside the asset to a source path (the migration
    function ships `sql/`).
    """
    package_dir = FUNCTIONS_DIR / package
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"functions/{package}/__init__.py is missing: no such function")
    sources: dict[str, Path] = {
        "functions/__init__.py": FUNCTIONS_DIR / "__init__.py",
        "functions/shared": FUNCTIONS_DIR / "shared",
        f"functions/{package}": package_dir,
        # A source that does not exist yet (sql/ before its first migration) is
        # left out rather than failing every synth.
        **{dest: src for dest, src in (extra or {}).items() if src.exists()},
    }
    parts: list[bytes] = []
    for destination, source in sorted(sources.items()):
        for path in _files(source):
            relative = Path(destination) / path.relative_to(source) if source.is_dir() else None
            parts.append(str(relative or destination).encode())
            parts.append(path.read_bytes())
    key = _digest(parts)
    target = BUILD_ROOT / "functions" / f"{package}-{key}"
    if target.is_dir():
        return target, key
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=target.parent))
    build.chmod(0o755)  # mkdtemp's 0700 would travel into the asset
    for destination, source in sources.items():
        if source.is_dir():
            shutil.copytree(source, build / destination, ignore=_IGNORED)
        else:
            (build / destination).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, build / destination)
    _publish(build, target, f"{package}-*")
    return target, key
