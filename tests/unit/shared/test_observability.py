"""The Tracer instruments AWS calls everywhere, and SQL only where a function queries it.

Each handler is imported in a fresh interpreter with the environment Lambda sets
(outside Lambda, Powertools turns tracing off and patches nothing), and the
child reports what the X-Ray SDK patched and whether a database driver was
imported along the way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import lambda_runtime_environment

ROOT = Path(__file__).resolve().parents[3]
CHILD = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
from aws_xray_sdk.core import patcher
print(json.dumps({
    "patched": sorted(patcher._PATCHED_MODULES),
    "imported": sorted(m for m in ("psycopg", "sqlite3") if m in sys.modules),
}))
"""


def _traced(package: str) -> dict[str, list[str]]:
    env = {
        **lambda_runtime_environment(ROOT, package, f"{sys.version_info[0]}.{sys.version_info[1]}"),
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, f"functions.{package}.handler"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found: dict[str, list[str]] = json.loads(proc.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("package", ["rotate_jwt", "rotate_iam", "waf_responder", "secret_age"])
def test_functions_without_a_database_trace_aws_calls_and_import_no_driver(package: str):
    found = _traced(package)

    assert found == {"patched": ["botocore"], "imported": []}


@pytest.mark.parametrize("package", ["rotate_db", "migrate"])
def test_functions_that_query_postgresql_trace_its_statements_too(package: str):
    found = _traced(package)

    assert found["patched"] == ["botocore", "psycopg"]
    assert "sqlite3" not in found["imported"]


def test_a_secret_value_never_reaches_a_debug_log(aws: str, caplog):
    """With every logger at DEBUG, as while debugging a function (AWS_LAMBDA_LOG_LEVEL)
    or the CLI, botocore would write the GetSecretValue response body, the value in it."""
    import json
    import logging

    import boto3

    import functions.shared.observability  # noqa: F401 - what every function imports
    from functions.shared.rotation.store import SecretStore

    value = "debug-canary-" + "q" * 24  # pragma: allowlist secret
    boto3.client("secretsmanager").create_secret(
        Name="babyshield/debug-canary", SecretString=json.dumps({"password": value})
    )
    with caplog.at_level(logging.DEBUG):
        found = SecretStore(caller="test").read("babyshield/debug-canary", stage="AWSCURRENT")
    assert found is not None
    assert found.value["password"] == value
    assert value not in caplog.text
    assert all(value not in str(record.__dict__) for record in caplog.records)
