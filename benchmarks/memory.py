"""Memory: the API handler's RSS after 100 and after 10,000 mixed requests, vs the peer.

Each handler runs in a fresh child process against the local stack
(benchmarks/stack.py) and serves the same cycle of requests: `GET /health`, an
authenticated `GET /recalls`, an anonymous one, a SQL-injection attempt (400)
and an unknown path (404). RSS is read from /proc/self/status: VmRSS (now) and
VmHWM (the peak). Growth is measured from request 100, once every lazy import
and pool is in place, to request 10,000: a leak per request shows there, while
what a cold process builds once does not. The cold process's RSS (after the
first request) is compared with the peer's.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from benchmarks.common import Result
from benchmarks.stack import child_environment, child_main, rss_kb, run_child, running_stack

REQUESTS = max(int(os.environ.get("BENCH_MEMORY_REQUESTS", "10000")), 200)
GROWTH_LIMIT = 0.10
HANDLERS = {
    "api": ("functions.api.handler", "lambda_handler"),
    "peer": ("benchmarks.peers.fastapi_app", "handler"),
}


def _cycle(api_key: str) -> list[tuple[dict[str, Any], int]]:
    from ops.apigw import rest_event

    return [
        (rest_event("GET", "/health"), 200),
        (rest_event("GET", "/recalls", query="q=crib", headers={"x-api-key": api_key}), 200),
        (rest_event("GET", "/recalls", query="brand=Acme&limit=5"), 200),
        (rest_event("GET", "/recalls", query="q=1%27%20OR%20%271%27%3D%271%27%20--"), 400),
        (rest_event("GET", "/no-such-path"), 404),
    ]


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from ops.apigw import LocalLambdaContext

    module, attr = spec["handler"]
    handler = getattr(importlib.import_module(module), attr)
    cycle = _cycle(spec["api_key"])
    readings: dict[str, dict[str, int]] = {}
    for served in range(1, spec["requests"] + 1):
        event, expected = cycle[(served - 1) % len(cycle)]
        status = handler(event, LocalLambdaContext())["statusCode"]
        if status != expected:
            raise RuntimeError(f"request {served}: {status} != {expected} for {event['path']}")
        if served in (1, 100, spec["requests"]):
            readings[str(served)] = rss_kb()
    return readings


def run() -> Result:
    readings: dict[str, dict[str, dict[str, int]]] = {}
    with running_stack() as bench:
        for name, handler in HANDLERS.items():
            readings[name] = run_child(
                "benchmarks.memory",
                {"handler": handler, "api_key": bench.api_key, "requests": REQUESTS},
                child_environment(bench.environment),
            )
        database = bench.database
    last = str(REQUESTS)
    result = Result(name="memory")
    figures: dict[str, Any] = {}
    for name, found in readings.items():
        figures[name] = {
            f"after_{served}_{kind.removesuffix('_kb')}_mb": value / 1024
            for served, reading in found.items()
            for kind, value in reading.items()
        }
        growth = found[last]["peak_kb"] / found["100"]["peak_kb"] - 1
        figures[name]["peak_growth_100_to_last"] = growth
        result.ratios[f"{name}_peak_growth_100_to_{last}"] = growth
    result.ratios["api_cold_rss_vs_peer"] = (
        readings["api"]["1"]["rss_kb"] / readings["peer"]["1"]["rss_kb"]
    )
    result.ratios[f"api_peak_rss_after_{last}_vs_peer"] = (
        readings["api"][last]["peak_kb"] / readings["peer"][last]["peak_kb"]
    )
    result.targets[f"api peak RSS growth 100 -> {last} requests < 10%"] = (
        figures["api"]["peak_growth_100_to_last"] < GROWTH_LIMIT
    )
    result.targets["api cold RSS below the peer's"] = result.ratios["api_cold_rss_vs_peer"] < 1
    result.figures = {"handlers": figures, "requests": REQUESTS}
    result.notes += [
        "mixed cycle: /health, /recalls with key, /recalls anonymous, SQLi attempt, 404",
        f"local stack on {database}; each handler in a fresh child process",
    ]
    return result


if __name__ == "__main__" and not child_main(child):
    res = run()
    res.write()
    res.print_table()
    sys.exit(0)
