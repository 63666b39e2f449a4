"""Cold start: a fresh interpreter imports a handler and serves its first event.

Median of at least 15 fresh processes per target, measured in the same run as
the floor (a bare handler returning a constant) and the peer (the same API in
FastAPI behind Mangum). Time is taken inside the child, from before the import
to after the first response, which is what Lambda bills as init plus the first
invocation; interpreter start-up is the same for every target and left out.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import ROOT, Result

RUNS = int(os.environ.get("BENCH_COLDSTART_RUNS", "15"))

# Each child prints one JSON line: {"import_s", "first_s", "rss_kb"}.
CHILD = r"""
import json, resource, sys, time
from ops.apigw import LocalLambdaContext, rest_event
start = time.perf_counter()
{import_stmt}
imported = time.perf_counter()
events = {events}
for method, path in events:
    response = handler(rest_event(method, path), LocalLambdaContext())
    assert response["statusCode"] in (200, 401, 403, 404), response
done = time.perf_counter()
print(json.dumps({{
    "import_s": imported - start,
    "first_s": done - imported,
    "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}}))
"""

TARGETS: dict[str, dict[str, Any]] = {
    "floor": {
        "import": "handler = lambda event, context: {'statusCode': 200, 'body': 'ok'}",
        "events": [("GET", "/health")],
    },
    "api": {
        "import": "from functions.api.handler import lambda_handler as handler",
        "events": [("GET", "/health")],
    },
    "peer_fastapi_mangum": {
        "import": "from benchmarks.peers.fastapi_app import handler",
        "events": [("GET", "/health")],
    },
}


def child_environment() -> dict[str, str]:
    """Only what a Lambda would have: a region, no settings at all."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return env


def run_once(target: dict[str, Any]) -> dict[str, float]:
    code = CHILD.format(import_stmt=target["import"], events=repr(target["events"]))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    line = proc.stdout.strip().splitlines()[-1]
    figures: dict[str, float] = json.loads(line)
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
            {
                "module": name.strip(),
                "cumulative_us": int(cumulative_us),
                "self_us": int(self_us),
            }
        )
    rows.sort(key=lambda r: r["cumulative_us"], reverse=True)
    return [r for r in rows if r["module"] != module][:top]


def run() -> Result:
    result = Result(name="coldstart")
    medians: dict[str, dict[str, float]] = {}
    for name, target in TARGETS.items():
        samples = [run_once(target) for _ in range(RUNS)]
        totals = [s["import_s"] + s["first_s"] for s in samples]
        medians[name] = {
            "total_ms": statistics.median(totals) * 1000,
            "import_ms": statistics.median(s["import_s"] for s in samples) * 1000,
            "first_event_ms": statistics.median(s["first_s"] for s in samples) * 1000,
            "rss_mb": statistics.median(s["rss_kb"] for s in samples) / 1024,
            "runs": RUNS,
        }
    api, peer = medians["api"]["total_ms"], medians["peer_fastapi_mangum"]["total_ms"]
    result.ratios["api_vs_fastapi_mangum"] = api / peer
    result.ratios["api_rss_vs_fastapi_mangum"] = (
        medians["api"]["rss_mb"] / medians["peer_fastapi_mangum"]["rss_mb"]
    )
    result.targets["api cold start <= 0.6x FastAPI+Mangum"] = api <= 0.6 * peer
    result.figures["targets"] = medians
    result.figures["api_top_imports"] = import_profile("functions.api.handler")
    return result


if __name__ == "__main__":
    res = run()
    res.write()
    res.print_table()
