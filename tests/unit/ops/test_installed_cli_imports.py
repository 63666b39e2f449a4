"""The `babyshield` command as installed (`make install`: the package carries
`functions` and `ops`, pyproject's packages.find), run from outside the checkout:
every ops module must import there. A module that reached into `cdk/` imported
in the tests, whose path holds the checkout, and failed `make run` with a
ModuleNotFoundError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
OPS_MODULES = sorted(
    f"ops.{path.stem}" for path in (REPO / "ops").glob("*.py") if path.stem != "__init__"
)


def test_every_ops_module_imports_from_the_installed_package(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["AWS_REGION"] = "us-east-1"
    failed = {}
    for module in OPS_MODULES:
        answer = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if answer.returncode != 0:
            failed[module] = answer.stderr.strip().splitlines()[-1:]
    assert failed == {}
    assert "ops.local_edge" in OPS_MODULES
