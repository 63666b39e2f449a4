"""The environment the API benchmarks share: the local stack, started in-process.

`running_stack()` starts what `make run` starts (a moto server, a migrated and
seeded PostgreSQL database, the AWS resources under their CDK names), in a
private database with its own roles that is dropped at the end, and adds one
API key of its own with a rate limit no benchmark can reach: the per-key limit
is a real DynamoDB call on every authenticated request, but a 429 would end a
load test, so the key's limit is set out of the way.

Benchmarks run their targets in child processes (a fresh interpreter is what a
cold start is, and one process per target keeps one target's imports out of
another's memory figures); `child_environment()` is what such a child gets:
the stack's endpoint, tables and database secrets, nothing from the shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

# Far above anything a benchmark sends in a minute (the HTTP test peaks in the
# low thousands per second); the column is an int.
BENCH_KEY_RATE_LIMIT = 2_000_000_000


@dataclass(frozen=True)
class BenchStack:
    api_key: str = field(repr=False)
    # What a child process needs to reach this stack (see child_environment).
    environment: dict[str, str] = field(repr=False)
    database: str


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Only what a Lambda would have: a region and, when given, the stack's settings."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra or {})
    return env


def run_child(module: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run `python -m module --child SPEC_FILE OUT_FILE`; return what it wrote to OUT_FILE.

    The child's stdout is discarded: the handlers log a JSON line per request, as
    they do in Lambda, and the cost of formatting it stays in the measurement
    while the lines themselves would bury the results.
    """
    with tempfile.TemporaryDirectory(prefix="babyshield-bench-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        proc = subprocess.run(
            [sys.executable, "-m", module, "--child", str(spec_file), str(out_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{module} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(out_file.read_text())
        return result


def child_main(body: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """In a child started by run_child: run `body(spec)`, write its answer; else False."""
    if len(sys.argv) != 4 or sys.argv[1] != "--child":
        return False
    spec = json.loads(Path(sys.argv[2]).read_text())
    Path(sys.argv[3]).write_text(json.dumps(body(spec)))
    return True


def rss_kb() -> dict[str, int]:
    """This process's resident set now (VmRSS) and at its peak (VmHWM), in KiB.

    Not ru_maxrss: Linux carries it across exec, so a child of a large parent
    would report the parent's peak.
    """
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return {"rss_kb": found.get("VmRSS", 0), "peak_kb": found.get("VmHWM", 0)}


def _bench_key(admin_conninfo: str) -> str:
    """A recalls:read key of the demo user with an unreachable rate limit."""
    import psycopg

    from functions.shared.identity.api_keys import generate_api_key
    from ops.demo_identity import DEMO_USER_EMAIL

    key = generate_api_key()
    with psycopg.connect(admin_conninfo) as conn:
        conn.execute(
            "INSERT INTO public.api_keys "
            "(key_id, owner_id, secret_hash, scopes, rate_limit_per_minute) "
            "SELECT %s, id, %s, %s, %s FROM public.users WHERE email = %s",
            (key.key_id, key.secret_hash, ["recalls:read"], BENCH_KEY_RATE_LIMIT, DEMO_USER_EMAIL),
        )
    return key.plaintext


@contextmanager
def running_stack() -> Iterator[BenchStack]:
    """The local stack on a private database; everything is removed on exit."""
    from ops.local_stack import LocalStackOptions, local_stack
    from ops.postgres import embedded_cluster, shared_server
    from tests.support.postgres import private_database

    with ExitStack() as stack:
        server = shared_server()
        where = "DATABASE_URL or 127.0.0.1:5432"
        if server is None:
            server = stack.enter_context(embedded_cluster())
            where = "an embedded PostgreSQL started for this run"
        database = stack.enter_context(private_database(server))
        options = LocalStackOptions(
            port=0,
            quiet=True,
            oncall_printer=False,
            admin_conninfo=database.admin_conninfo,
            roles=database.roles,
        )
        # local_stack writes .babyshield/local.json for scripts; keep it out of the tree.
        cwd = os.getcwd()
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="babyshield-bench-"))
        os.chdir(scratch)
        stack.callback(os.chdir, cwd)
        state = stack.enter_context(local_stack(options))
        environment = {
            name: value
            for name, value in state["environment"].items()
            # The admin login is for provisioning; the API reads its tiers' secrets.
            if name != "DATABASE_URL"
        }
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            environment[name] = os.environ[name]
        yield BenchStack(
            api_key=_bench_key(database.admin_conninfo),
            environment=environment,
            database=where,
        )
