"""Lambda assets built on this machine, without Docker.

Two kinds of directory, each content-addressed under `.babyshield/cdk-build/`:

* one dependency layer: `requirements/runtime.lock` installed with pip for the
  Lambda platform (`--platform manylinux... --only-binary=:all:`), so a wheel
  built for this machine can never slip in. Built once per lock file and reused
  by every later synth, which keeps repeated synths fast;
* one code directory per function: `functions/__init__.py`, `functions/shared/`
  and the function's own package, never its neighbours'.

Both ship bytecode compiled by an interpreter of the runtime's Python version
(`lambda_python`). `/var/task` and `/opt` are read-only in Lambda, so a module
without usable bytecode is compiled from source in every new execution
environment, and for this code that is most of a cold start. The bytecode is
hash-checked (PEP 552): the deployment zip dates every file 1980-01-01, which
would make timestamp-checked bytecode stale on arrival, and a source that does
not match its bytecode is still compiled rather than run stale.

A directory is built in a temporary sibling and renamed into place, so two
synths running at once (a test session and `make synth`) never see half a build.
"""

from __future__ import annotations

import functools
import glob
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / ".babyshield" / "cdk-build"
RUNTIME_LOCK = REPO_ROOT / "requirements" / "runtime.lock"
FUNCTIONS_DIR = REPO_ROOT / "functions"

# The Lambda runtime's Python (cdk/functions.py's RUNTIME names the same version;
# a test keeps them equal) and architecture. The runtime is the newest Python the
# build machines have, because the assets' bytecode is compiled by that version.
LAMBDA_PYTHON_VERSION = "3.13"
LAMBDA_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
# This machine's platform tags: a layer that runs here, for tests and benchmarks
# of the packaged code (the Lambda layer itself is always LAMBDA_PLATFORMS).
HOST_PLATFORMS = (
    f"manylinux_2_28_{platform.machine()}",
    f"manylinux2014_{platform.machine()}",
)
# Where Lambda mounts the code and the layer: the paths recorded in the bytecode,
# so a traceback names the deployed file rather than this machine's build folder.
LAMBDA_TASK_ROOT = "/var/task"
LAMBDA_LAYER_ROOT = "/opt/python"
# Part of every build's key: a change to how assets are built gives new ones.
BUILD_FORMAT = b"bytecode:checked-hash:1"
# Part of the dependency layer's key only: how its botocore data is cut down.
LAYER_FORMAT = b"botocore-data:slim:1"
# The AWS APIs the functions call (their clients' service names; a test reads every
# client the functions create and keeps this list complete), and `xray`, which the
# X-Ray SDK's sampling client uses outside Lambda. The layer keeps botocore's models
# of these and drops the other ~440 services' (28 MB of an 87 MB layer). A botocore
# client's first creation lists every service directory it ships, twice, to check
# the name it was given: about 12 ms of each function's first client on the build
# machine with the full set (docs/PERFORMANCE.md, "Deployment packages").
BOTOCORE_SERVICES = (
    "cloudwatch",
    "dynamodb",
    "iam",
    "logs",
    "secretsmanager",
    "sns",
    "ssm",
    "sts",
    "wafv2",
    "xray",
)
LAMBDA_PYTHON_ENV = "BABYSHIELD_LAMBDA_PYTHON"
UV_PYTHON_DIR = REPO_ROOT / ".tools" / "python"  # the Makefile's LAMBDA_PYTHON_DIR

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


def _python_version(executable: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - a local interpreter, no shell
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.cache
def lambda_python() -> str:
    """An interpreter of the Lambda runtime's Python version, to compile bytecode with.

    `$BABYSHIELD_LAMBDA_PYTHON` when set (and then nothing else), else the first
    of: this interpreter, `pythonX.Y` on PATH, a pyenv installation of X.Y, one
    that `make lambda-python` installed with uv into `.tools/python`.
    """
    wanted = LAMBDA_PYTHON_VERSION
    chosen = os.environ.get(LAMBDA_PYTHON_ENV)
    if chosen:
        found = _python_version(chosen)
        if found != wanted:
            raise RuntimeError(
                f"{LAMBDA_PYTHON_ENV}={chosen} is Python {found or '(not runnable)'}; "
                f"the Lambda runtime is Python {wanted}"
            )
        return chosen
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [
        sys.executable,
        shutil.which(f"python{wanted}"),
        *sorted(glob.glob(f"{pyenv_root}/versions/{wanted}.*/bin/python{wanted}"), reverse=True),
        *sorted(glob.glob(f"{UV_PYTHON_DIR}/cpython-{wanted}.*/bin/python{wanted}"), reverse=True),
    ]
    for candidate in candidates:
        if candidate and _python_version(candidate) == wanted:
            return candidate
    raise RuntimeError(
        f"no Python {wanted} interpreter found to compile the Lambda assets' bytecode "
        f"(the runtime is python{wanted}): run `make lambda-python`, put python{wanted} on "
        f"PATH, or set {LAMBDA_PYTHON_ENV} to its path"
    )


def prune_botocore_data(site: Path, keep: Iterable[str] = BOTOCORE_SERVICES) -> None:
    """Drop the service models under `site/botocore/data` that no function uses.

    The shared files beside them (partitions, retry and default configuration) stay,
    endpoints.json cut to the kept services (`slim_botocore_data`). A kept service
    that botocore does not ship is an error, not a silent gap: the function calling
    it would fail in AWS only.
    """
    data = site / "botocore" / "data"
    if not data.is_dir():
        return
    kept = set(keep)
    missing = sorted(name for name in kept if not (data / name).is_dir())
    if missing:
        raise RuntimeError(
            f"botocore in the layer has no model for {', '.join(missing)}; "
            "fix BOTOCORE_SERVICES in cdk/assets.py"
        )
    for service in data.iterdir():
        if service.is_dir() and service.name not in kept:
            shutil.rmtree(service)
    slim_botocore_data(data)


def slim_botocore_data(data: Path) -> None:
    """Cut what botocore parses to build a client down to what the kept services need.

    Every function's first client parses `endpoints.json` (1.2 MB: every service in
    every partition, about 15 ms) and each service's `service-2.json.gz` (DynamoDB's
    is 556 KB, four fifths of it documentation, which botocore reads only to render
    docstrings and help()). The layer keeps the entries of its own services in every
    partition, and their models without documentation strings: what a client resolves
    and sends is unchanged (tests/infrastructure/test_assets.py compares both with
    the full data).
    """
    prefixes = set()
    for model in sorted(data.glob("*/*/service-2.json*")):
        loaded = _load_json(model)
        # endpoints.json lists a service under its endpoint prefix (CloudWatch: monitoring).
        prefixes.add(loaded.get("metadata", {}).get("endpointPrefix", model.parent.parent.name))
        _write_json(model, _without_documentation(loaded))
    endpoints = data / "endpoints.json"
    if endpoints.is_file():
        table = _load_json(endpoints)
        for partition in table.get("partitions", []):
            services = partition.get("services", {})
            partition["services"] = {k: v for k, v in services.items() if k in prefixes}
        _write_json(endpoints, table)


def _without_documentation(value: object) -> object:
    """A model without its documentation strings. Only string values go: a shape may
    have a member named `documentation`, whose value is its definition."""
    if isinstance(value, dict):
        return {
            key: _without_documentation(item)
            for key, item in value.items()
            if not (key in ("documentation", "documentationUrl") and isinstance(item, str))
        }
    if isinstance(value, list):
        return [_without_documentation(item) for item in value]
    return value


def _load_json(path: Path) -> dict[str, Any]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    loaded = json.loads(raw)
    if not isinstance(loaded, dict):
        raise RuntimeError(f"{path} is not a JSON object")
    return loaded


def _write_json(path: Path, value: object) -> None:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    # mtime=0: the same data gives the same bytes, build after build.
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)


def compile_bytecode(root: Path, deployed_at: str) -> None:
    """Compile every module under `root` for the runtime, as deployed under `deployed_at`."""
    command = [
        lambda_python(),
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "checked-hash",
        "-s",
        str(root),
        "-p",
        deployed_at,
        str(root),
    ]
    # A fixed hash seed: set constants are marshalled in hash order, and the same
    # sources should give the same bytes.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPYCACHEPREFIX", None)  # bytecode goes next to its source
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(
            f"compiling the bytecode of {root} failed ({' '.join(command)}):\n"
            f"{result.stdout}{result.stderr}"
        )


# Run by the runtime's interpreter: every module that lacks current bytecode.
_STALE_BYTECODE_CHECK = r"""
import importlib.util, pathlib, sys
root = pathlib.Path(sys.argv[1])
for source in sorted(root.rglob("*.py")):
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    try:
        data = cached.read_bytes()
    except FileNotFoundError:
        print(f"{source.relative_to(root)}: no bytecode")
        continue
    flags = int.from_bytes(data[4:8], "little")
    if data[:4] != importlib.util.MAGIC_NUMBER:
        print(f"{source.relative_to(root)}: bytecode of another Python version")
    elif flags != 0b11:
        print(f"{source.relative_to(root)}: bytecode not hash-checked (flags {flags})")
    elif data[8:16] != importlib.util.source_hash(source.read_bytes()):
        print(f"{source.relative_to(root)}: bytecode does not match the source")
"""


def stale_bytecode(root: Path) -> list[str]:
    """Modules under `root` that the Lambda runtime would compile from source, and why."""
    result = subprocess.run(  # noqa: S603
        [lambda_python(), "-c", _STALE_BYTECODE_CHECK, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


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


def dependency_layer_dir(
    lock_file: Path = RUNTIME_LOCK,
    platforms: tuple[str, ...] = LAMBDA_PLATFORMS,
    botocore_services: tuple[str, ...] | None = BOTOCORE_SERVICES,
) -> tuple[Path, str]:
    """A directory with `python/` holding the locked dependencies, and its hash.

    `platforms` are the wheel tags to install: the Lambda's by default,
    HOST_PLATFORMS for a layer that runs on this machine. `botocore_services`:
    the service models the layer keeps (None: all of them, for comparison).
    """
    key = _digest(
        [
            lock_file.read_bytes(),
            LAMBDA_PYTHON_VERSION.encode(),
            BUILD_FORMAT,
            LAYER_FORMAT,
            *map(str.encode, platforms),
            b"*" if botocore_services is None else ",".join(sorted(botocore_services)).encode(),
        ]
    )
    # One name per architecture, so building this machine's layer never prunes
    # the Lambda's (each prunes only superseded builds of its own kind).
    kind = f"deps-{platforms[0].removeprefix('manylinux_2_28_')}"
    target = BUILD_ROOT / f"{kind}-{key}"
    if target.is_dir():
        return target, key
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".deps-", dir=BUILD_ROOT))
    build.chmod(0o755)  # mkdtemp's 0700 would travel into the asset
    platform_args = [arg for tag in platforms for arg in ("--platform", tag)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        # pip would compile with this interpreter's version; compile_bytecode below
        # uses the runtime's.
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
    try:
        if botocore_services is not None:
            prune_botocore_data(build / "python", botocore_services)
        compile_bytecode(build / "python", LAMBDA_LAYER_ROOT)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    _publish(build, target, f"{kind}-*")
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
    parts: list[bytes] = [LAMBDA_PYTHON_VERSION.encode(), BUILD_FORMAT]
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
    try:
        compile_bytecode(build, LAMBDA_TASK_ROOT)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    _publish(build, target, f"{package}-*")
    return target, key


# The deployment zip dates every entry 1980-01-01 00:00 (the zip format's
# earliest date), so in Lambda every source file carries this mtime.
ZIP_EPOCH = 315532800


def unpack_like_lambda(source: Path, dest: Path) -> Path:
    """Copy an asset directory to `dest` as Lambda unpacks its zip, and return `dest`.

    Every file is dated as the zip dates it, so a test or benchmark of the copy
    meets the same bytecode checks a deployed function does. A function's code
    goes where `/var/task` would be; its layer's `python/` is `/opt/python`, and
    one unpacked layer can serve several functions, as it does in Lambda.
    """
    shutil.copytree(source, dest)
    for path in (dest, *dest.rglob("*")):
        os.utime(path, (ZIP_EPOCH, ZIP_EPOCH), follow_symlinks=False)
    return dest
