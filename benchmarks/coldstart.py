"""Cold start: a fresh interpreter imports a handler and serves its first events.

Per target, the median of at least 15 fresh processes, run in interleaved
rounds (one process of every target per round) so a burst of load from a
neighbour on this shared machine hits every target rather than one. Time is
taken inside the child, from before the handler import to after the last first
event, which is what Lambda bills as init plus the first invocation;
interpreter start-up is the same for every target and left out. Every child
carries the environment Lambda's runtime sets (`lambda_runtime_environment`),
since Powertools and the X-Ray SDK take other paths outside Lambda.

Targets, all in the same run:

- `floor`: a bare handler that returns a constant (benchmarks/peers/floor.py);
- `api_health`, `peer_health`: our API and the FastAPI+Mangum peer
  (benchmarks/peers/fastapi_app.py) answering `GET /health` with Lambda's
  runtime environment and `AWS_REGION`, none of the stack's settings: the
  framework and the edge, no I/O;
- `api`, `peer`: the target of the issue, `GET /health` then an authenticated
  `GET /recalls` against the local stack (benchmarks/stack.py): the API key is
  looked up in PostgreSQL, counted in DynamoDB on a moto server, the search runs
  as the read-only login whose password comes from Secrets Manager. The peer
  runs the same identity and data code. What each pays beyond its `/health` is
  reported (`api_recalls_increment_ms`, `peer_recalls_increment_ms`); the part
  both pay (botocore, psycopg, three network round trips) is at most the smaller
  of the two, reported as `shared_io_ms`: the peer builds its routes' models at
  import and ours on first use, so our increment holds work of our own;
- `rotate_db`, `rotate_jwt`, `rotate_iam`: the handler imported and given a
  malformed rotation event (an unknown Step), which each rejects in its gate
  before any AWS call; `waf_responder`: a foreign EventBridge event, which it
  rejects the same way. These are the init costs of those functions.

Also `python -X importtime` of the API handler: the ten most expensive imports.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import ROOT, Result, bench_line, lambda_runtime_environment
from benchmarks.stack import BenchStack, child_environment, running_stack

RUNS = max(int(os.environ.get("BENCH_COLDSTART_RUNS", "15")), 1)
TARGET_RATIO = 0.6
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

# The child: nothing imported before the clock starts but importlib, json, sys and time.
CHILD = r"""
import importlib, json, sys, time

class Context:
    function_name = "babyshield-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/babyshield-bench"
    log_stream_name = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:babyshield-bench"
    def get_remaining_time_in_millis(self):
        return 29000

def peak_rss_kb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a
    # large parent would report the parent's peak.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0

spec = json.loads(sys.argv[1])
start, cpu_start = time.perf_counter(), time.process_time()
handler = getattr(importlib.import_module(spec["module"]), spec["attr"])
imported = time.perf_counter()
outcomes = []
for event in spec["events"]:
    try:
        answer = handler(event, Context())
        outcomes.append(str(answer.get("statusCode", answer.get("status"))))
    except Exception as error:
        outcomes.append(type(error).__name__)
done, cpu_done = time.perf_counter(), time.process_time()
print("BENCH " + json.dumps({
    "import_s": imported - start,
    "first_s": done - imported,
    "cpu_s": cpu_done - cpu_start,
    "rss_kb": peak_rss_kb(),
    "outcomes": outcomes,
}))
"""

ROTATION_EVENT = {
    "SecretId": "arn:aws:secretsmanager:us-east-1:000000000000:secret:babyshield-bench",
    "ClientRequestToken": "00000000-0000-4000-8000-000000000000",
    "Step": "notAStep",
}
FOREIGN_EVENT = {"source": "aws.ec2", "detail-type": "EC2 Instance State-change", "detail": {}}


def api_events(api_key: str | None) -> list[dict[str, Any]]:
    from ops.apigw import rest_event

    events = [rest_event("GET", "/health")]
    if api_key is not None:
        events.append(
            rest_event("GET", "/recalls", query="q=crib&limit=20", headers={"x-api-key": api_key})
        )
    return events


def targets(bench: BenchStack) -> dict[str, dict[str, Any]]:
    """name -> module, attribute, events, extra environment, expected outcomes."""
    api = "functions.api.handler", "lambda_handler"
    peer = "benchmarks.peers.fastapi_app", "handler"
    found: dict[str, dict[str, Any]] = {
        "floor": {"target": ("benchmarks.peers.floor", "handler"), "events": api_events(None)},
        "api_health": {"target": api, "events": api_events(None)},
        "peer_health": {"target": peer, "events": api_events(None)},
        "api": {"target": api, "events": api_events(bench.api_key), "env": bench.environment},
        "peer": {"target": peer, "events": api_events(bench.api_key), "env": bench.environment},
    }
    for target in found.values():
        target["expect"] = ["200"] * len(target["events"])
    for fn in ("rotate_db", "rotate_jwt", "rotate_iam"):
        found[fn] = {
            "target": (f"functions.{fn}.handler", "lambda_handler"),
            "events": [ROTATION_EVENT],
            "expect": ["RotationError"],
        }
    found["waf_responder"] = {
        "target": ("functions.waf_responder.handler", "lambda_handler"),
        "events": [FOREIGN_EVENT],
        "expect": ["rejected"],
    }
    return found


def run_once(name: str, target: dict[str, Any]) -> dict[str, Any]:
    module, attr = target["target"]
    spec = json.dumps({"module": module, "attr": attr, "events": target["events"]})
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, spec],
        cwd=ROOT,
        env=child_environment(
            {**lambda_runtime_environment(ROOT, name, PYTHON), **target.get("env", {})}
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    figures = bench_line(proc, f"cold start of {name}")
    if figures["outcomes"] != target["expect"]:
        raise RuntimeError(
            f"cold start of {name}: outcomes {figures['outcomes']}, expected {target['expect']}"
        )
    return figures


def import_profile(module: str, top: int = 10) -> list[dict[str, Any]]:
    """The most expensive imports (cumulative microseconds) from `python -X importtime`."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[dict[str, Any]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        rows.append(
            {"module": name.strip(), "cumulative_us": int(cumulative_us), "self_us": int(self_us)}
        )
    rows.sort(key=lambda r: r["cumulative_us"], reverse=True)
    return [r for r in rows if r["module"] != module][:top]


def summarise(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "total_ms": statistics.median(s["import_s"] + s["first_s"] for s in samples) * 1000,
        "import_ms": statistics.median(s["import_s"] for s in samples) * 1000,
        "first_events_ms": statistics.median(s["first_s"] for s in samples) * 1000,
        "cpu_ms": statistics.median(s["cpu_s"] for s in samples) * 1000,
        "rss_mb": statistics.median(s["rss_kb"] for s in samples) / 1024,
        "runs": len(samples),
    }


def run() -> Result:
    with running_stack() as bench:
        chosen = targets(bench)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
        # One uncounted process each, so every target reads compiled bytecode as a
        # deployed function does (its assets ship it, cdk/assets.py; the `package`
        # benchmark measures the packages themselves). uv, which fills .venv, compiles none.
        for name, target in chosen.items():
            run_once(name, target)
        for _ in range(RUNS):
            for name, target in chosen.items():
                samples[name].append(run_once(name, target))
        database = bench.database
    medians = {name: summarise(found) for name, found in samples.items()}
    result = Result(name="coldstart")
    api, peer = medians["api"], medians["peer"]
    result.ratios["api_vs_fastapi_mangum"] = api["total_ms"] / peer["total_ms"]
    result.ratios["api_vs_fastapi_mangum_health_only"] = (
        medians["api_health"]["total_ms"] / medians["peer_health"]["total_ms"]
    )
    result.ratios["api_cpu_vs_fastapi_mangum"] = api["cpu_ms"] / peer["cpu_ms"]
    result.ratios["api_rss_vs_fastapi_mangum"] = api["rss_mb"] / peer["rss_mb"]
    result.targets[f"api cold start <= {TARGET_RATIO}x FastAPI+Mangum"] = (
        api["total_ms"] <= TARGET_RATIO * peer["total_ms"]
    )
    result.figures["targets"] = medians
    # What each pays for the authenticated request beyond its /health: the part both
    # pay (botocore and psycopg imports, the secret read, the connection, the key
    # lookup, the DynamoDB count) and its own first-request work, different per side.
    increments = {
        "api_recalls_increment_ms": api["total_ms"] - medians["api_health"]["total_ms"],
        "peer_recalls_increment_ms": peer["total_ms"] - medians["peer_health"]["total_ms"],
    }
    result.figures.update(increments)
    # What both pay is no more than either pays.
    result.figures["shared_io_ms"] = min(increments.values())
    result.figures["api_top_imports"] = import_profile("functions.api.handler")
    result.notes += [
        f"median of {RUNS} fresh processes per target, interleaved rounds",
        "api/peer: GET /health then GET /recalls with an API key against the local stack "
        f"({database}); the peer uses the same identity and data code",
        "*_health: GET /health only, Lambda's runtime environment, no stack settings",
        "shared_io_ms: the smaller of api_recalls_increment_ms and "
        "peer_recalls_increment_ms, an upper bound on what both pay beyond /health",
        "rotate_*: an unknown Step, rejected before any AWS call; "
        "waf_responder: a foreign EventBridge event, rejected",
    ]
    return result


if __name__ == "__main__":
    res = run()
    res.write()
    res.print_table()
