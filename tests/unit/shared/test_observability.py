"""The Tracer instruments AWS calls, and nothing else: no database driver is patched
(or imported at start) where a function never opens a database, nor patched where one
does, since the X-Ray SDK's psycopg patch records no statement our code runs.

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
def test_functions_that_query_postgresql_trace_aws_calls_only(package: str):
    found = _traced(package)

    assert found["patched"] == ["botocore"]
    assert "sqlite3" not in found["imported"]


def test_the_xray_psycopg_patch_records_no_statement_run_the_way_our_code_runs_them(
    pg_cluster: str,
):
    """Why psycopg is not patched: with the patch, `connection.execute()` and a
    statement inside `with psycopg.connect(...) as conn` record no subsegment; only
    `connection.cursor().execute()` would, which no function uses."""
    proc = subprocess.run(
        [sys.executable, "-c", XRAY_SQL_CHILD, pg_cluster],
        cwd=ROOT,
        env={"PATH": "", "PYTHONPATH": str(ROOT), "AWS_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "connection.execute": 0,
        "with ... as conn: conn.execute": 0,
        "cursor().execute": 1,
    }


XRAY_SQL_CHILD = """
import json, sys
from aws_xray_sdk.core import patch, xray_recorder
xray_recorder.configure(context_missing="IGNORE_ERROR", sampling=False)
patch(["psycopg"])
import psycopg
segment = xray_recorder.begin_segment("probe")
counts = {}
connection = psycopg.connect(sys.argv[1])
connection.execute("SELECT 1")
counts["connection.execute"] = len(segment.subsegments)
with psycopg.connect(sys.argv[1]) as conn:
    conn.execute("SELECT 1")
counts["with ... as conn: conn.execute"] = len(segment.subsegments)
connection.cursor().execute("SELECT 1")
counts["cursor().execute"] = len(segment.subsegments)
connection.close()
print(json.dumps(counts))
"""


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
