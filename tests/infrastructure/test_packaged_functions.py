"""The packaged functions run as Lambda runs them, and compile nothing at cold start.

Each function's code asset and a layer built from the same lock file for this
machine's platform are unpacked with the dates the deployment zip gives them
(`cdk.assets.unpack_like_lambda`; one layer serves them all), and the runtime's
Python imports the handler from there with bytecode writing off, as in
Lambda's read-only `/var/task`.
Every module loaded from the package must come from its shipped bytecode: one
compiled from source at import is a cold-start cost in every new execution
environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks.package import COUNTING, compiled_paths, without_bytecode
from cdk import assets
from functions.shared import names
from ops.apigw import rest_event

# The child: imports the handler and serves its events, while COUNTING records
# every module compiled from source.
CHILD = (
    COUNTING
    + r"""
import importlib, sys

class Context:
    function_name = "babyshield-packaged"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:babyshield-packaged"
    def get_remaining_time_in_millis(self):
        return 29000

spec = json.loads(sys.argv[1])
handler = importlib.import_module(spec["module"]).lambda_handler
statuses = [handler(event, Context())["statusCode"] for event in spec["events"]]
for module in spec["also_import"]:
    importlib.import_module(module)
print("RESULT " + json.dumps({"statuses": statuses, "version": sys.version}))
"""
)

# Imported lazily by the handlers, on their first database or AWS call.
LAZY_DEPENDENCIES = ["psycopg", "psycopg_pool", "botocore.session", "jwt", "cryptography.x509"]


@pytest.fixture(scope="module")
def host_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This machine's layer, unpacked once for every function, as Lambda's /opt."""
    layer, _ = assets.dependency_layer_dir(platforms=assets.HOST_PLATFORMS)
    return assets.unpack_like_lambda(layer, tmp_path_factory.mktemp("packaged") / "opt")


def _run_packaged(
    package: str, opt: Path, tmp_path: Path, events: list[dict[str, Any]]
) -> dict[str, Any]:
    code, _ = assets.function_code_dir(package)
    task, site = assets.unpack_like_lambda(code, tmp_path / "task"), opt / "python"
    spec = {
        "module": f"functions.{package}.handler",
        "events": events,
        "also_import": LAZY_DEPENDENCIES,
    }
    found, stdout = _run_runtime_python(
        [CHILD, json.dumps(spec)], f"{task}:{site}", tmp_path, {"AWS_REGION": "us-east-1"}
    )
    packaged = (str(task), str(opt))
    found["packaged"] = [p for p in compiled_paths(stdout) if p.startswith(packaged)]
    return found


def _run_runtime_python(
    script: list[str], path: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """Run `-c script...` with the runtime's Python on `path`, bytecode writing off, as
    in Lambda's read-only /var/task; the child's `RESULT {json}` line, and its stdout."""
    proc = subprocess.run(
        [assets.lambda_python(), "-c", *script],
        cwd=cwd,
        env={**(env or {}), "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    found: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return found, proc.stdout


@pytest.mark.parametrize("package", names.FUNCTION_PACKAGES)
def test_packaged_function_loads_every_module_from_shipped_bytecode(
    package: str, host_layer: Path, tmp_path: Path
):
    events = [rest_event("GET", "/health")] if package == "api" else []

    found = _run_packaged(package, host_layer, tmp_path, events)

    assert found["version"].startswith(assets.LAMBDA_PYTHON_VERSION + ".")
    assert found["statuses"] == [200] * len(events)
    assert found["packaged"] == []


def test_without_shipped_bytecode_the_same_import_compiles_the_package(
    host_layer: Path, tmp_path: Path
):
    # The control for the test above: the spy does see compilation when there is some.
    layer, _ = assets.dependency_layer_dir(platforms=assets.HOST_PLATFORMS)
    bare_opt = assets.unpack_like_lambda(layer, tmp_path / "opt")
    without_bytecode(bare_opt)

    found = _run_packaged("api", bare_opt, tmp_path, [rest_event("GET", "/health")])

    assert found["statuses"] == [200]
    assert any("/opt/python/pydantic/" in path for path in found["packaged"])


# Run by the runtime's Python on the unpacked layer: what botocore finds there.
BOTOCORE_CHILD = r"""
import json, botocore.session
session = botocore.session.get_session()
services = session.get_available_services()
for service in services:
    session.create_client(
        service, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
print("RESULT " + json.dumps({"services": services, "from": botocore.__file__}))
"""


def test_the_layers_botocore_has_the_functions_services_and_no_others(
    host_layer: Path, tmp_path: Path
):
    # When the runtime's Python lists and builds botocore clients from the layer
    found, _ = _run_runtime_python([BOTOCORE_CHILD], str(host_layer / "python"), tmp_path)

    # Then it is the layer's botocore, holding exactly the kept services, each usable
    assert found["from"].startswith(str(host_layer))
    assert found["services"] == sorted(assets.BOTOCORE_SERVICES)
