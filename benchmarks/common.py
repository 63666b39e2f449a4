"""What every benchmark shares: the result file format and the printed table.

Each result records the machine, the Python version and the git commit, and
puts ratios first: this machine is shared and noisy, so absolute figures are
context while ratios against a peer measured in the same run are the result.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def results_dir() -> Path:
    """benchmarks/results, or BENCH_RESULTS_DIR (the smoke test writes elsewhere)."""
    return Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS)


def bench_line(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    """The JSON of the last `BENCH {...}` line a finished child printed.

    A child that failed, or printed no such line, is an error naming `what`
    with the end of its stderr.
    """
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    found: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH "))
    return found


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for one benchmark, and put them back after it.

    `make bench` runs every benchmark in one process: a database URL or endpoint
    left behind by one would point the next at a database that no longer exists.
    The settings cache is cleared on the way in and out for the same reason.
    """
    from functions.shared.settings import get_settings

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def lambda_runtime_environment(task_root: Path | str, name: str, python: str) -> dict[str, str]:
    """What Lambda's runtime sets for a function, for a child that stands in for one.

    Libraries branch on it. Outside Lambda, Powertools' Tracer turns itself off,
    and the X-Ray SDK builds two botocore X-Ray clients for centralised sampling
    at import; in Lambda the Tracer patches its libraries and the SDK samples
    locally. Without these a cold start would measure code that Lambda never
    runs. `python` is the runtime's version ("3.13").
    """
    return {
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": f"babyshield-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{python}",
        # A sampled trace, as active tracing hands each invocation; the segments go
        # to the daemon's address over UDP, here to a closed port.
        "_X_AMZN_TRACE_ID": (
            "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=1"
        ),
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git_commit(),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class Result:
    """One benchmark's figures. `ratios` are printed first; `targets` say pass/fail."""

    name: str
    ratios: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ratios": self.ratios,
            "targets": self.targets,
            "figures": self.figures,
            "notes": self.notes,
            "machine": machine(),
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def write(self) -> Path:
        folder = results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def print_table(self) -> None:
        print(f"\n== {self.name} ==")
        rows = [(k, _fmt(v)) for k, v in self.ratios.items()]
        rows += [(f"target: {k}", "met" if ok else "NOT MET") for k, ok in self.targets.items()]
        rows += [(k, _fmt(v)) for k, v in _flatten(self.figures).items()]
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            print(f"  {key.ljust(width)}  {value}")
        for note in self.notes:
            print(f"  note: {note}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, list):
            flat[name] = f"[{len(value)} items]"
        else:
            flat[name] = value
    return flat


def time_per_call(fn: Callable[[], object], *, min_seconds: float = 0.5, rounds: int = 5) -> float:
    """Median seconds per call over `rounds`, each at least `min_seconds` long."""
    fn()  # warm caches
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / rounds:
            break
        calls *= 2
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)
