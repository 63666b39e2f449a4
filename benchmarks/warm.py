"""Warm cost: invocations per second in-process, ours vs the bare resolver vs the peer.

Three requests, each through three handlers in one warm child process against
the local stack (benchmarks/stack.py):

- `health`: `GET /health`, no I/O;
- `recalls`: `GET /recalls?q=crib&limit=20` with an API key: key lookup in
  PostgreSQL, per-key count in DynamoDB (moto server), the search;
- `attack`: `GET /recalls` with a SQL-injection `q`: ours and the peer refuse it
  with a 400 before any I/O; the bare resolver, having no inspection, runs the
  search like any other (which is the point of an edge).

Handlers: `api` (functions.api.handler, the full chain), `bare` (a Powertools
resolver with no guards and no validation whose routes call the same logic and
the same key check: benchmarks/peers/bare_resolver.py) and `peer` (FastAPI +
Mangum, benchmarks/peers/fastapi_app.py).

Each figure is the best of interleaved rounds (every handler measured in turn,
each round), wall and CPU time per call. CPU is the child's own (its threads
included; PostgreSQL and the moto server run elsewhere), so it is the cost the
framework and the chain add on top of I/O that is the same for all three. The
targets use CPU time; wall time is reported beside it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import Result
from benchmarks.stack import child_environment, child_main, run_child, running_stack

ROUNDS = max(int(os.environ.get("BENCH_WARM_ROUNDS", "5")), 1)
BATCH_SECONDS = float(os.environ.get("BENCH_WARM_BATCH_SECONDS", "0.3"))
CHAIN_LIMIT = 1.5
ATTACK_QUERY = "q=1%27%20OR%20%271%27%3D%271%27%20--"

HANDLERS = {
    "api": ("functions.api.handler", "lambda_handler"),
    "bare": ("benchmarks.peers.bare_resolver", "handler"),
    "peer": ("benchmarks.peers.fastapi_app", "handler"),
}
# The status each handler must answer, so a fast error can never pass for a fast answer.
EXPECTED = {
    "health": {"api": 200, "bare": 200, "peer": 200},
    "recalls": {"api": 200, "bare": 200, "peer": 200},
    "attack": {"api": 400, "bare": 200, "peer": 400},
}


def _events(api_key: str) -> dict[str, dict[str, Any]]:
    from ops.apigw import rest_event

    return {
        "health": rest_event("GET", "/health"),
        "recalls": rest_event(
            "GET", "/recalls", query="q=crib&limit=20", headers={"x-api-key": api_key}
        ),
        "attack": rest_event("GET", "/recalls", query=ATTACK_QUERY),
    }


def _per_call(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def _calibrate(fn: Callable[[], object]) -> int:
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= BATCH_SECONDS / 4:
            return max(1, int(calls * BATCH_SECONDS / (time.perf_counter() - start)))
        calls *= 2


def _check_answers(calls: dict[tuple[str, str], Callable[[], dict[str, Any]]]) -> None:
    for (scenario, name), call in calls.items():
        status = call()["statusCode"]
        expected = EXPECTED[scenario][name]
        if status != expected:
            raise RuntimeError(f"{name} {scenario}: {status} != {expected}")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from ops.apigw import LocalLambdaContext

    handlers = {
        name: getattr(importlib.import_module(module), attr)
        for name, (module, attr) in HANDLERS.items()
    }
    context = LocalLambdaContext()
    calls: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {}
    for scenario, event in _events(spec["api_key"]).items():
        for name, handler in handlers.items():

            def call(handler: Any = handler, event: dict[str, Any] = event) -> dict[str, Any]:
                answer: dict[str, Any] = handler(event, context)
                return answer

            calls[(scenario, name)] = call
    _check_answers(calls)
    sizes = {key: _calibrate(fn) for key, fn in calls.items()}
    best: dict[str, dict[str, dict[str, float]]] = {}
    for _ in range(spec["rounds"]):
        for (scenario, name), fn in calls.items():
            wall, cpu = _per_call(fn, sizes[(scenario, name)])
            found = best.setdefault(scenario, {}).setdefault(name, {"wall_us": wall * 1e6})
            found["wall_us"] = min(found["wall_us"], wall * 1e6)
            found["cpu_us"] = min(found.get("cpu_us", cpu * 1e6), cpu * 1e6)
    # Once more after the timed batches: a limit or a failure reached on the way
    # (a 429, a 503) answers fast, and would have been timed as an answer.
    _check_answers(calls)
    for by_handler in best.values():
        for found in by_handler.values():
            found["per_second"] = 1e6 / found["wall_us"]
    return {"figures": best, "calls_per_batch": {f"{s}.{n}": c for (s, n), c in sizes.items()}}


def run() -> Result:
    with running_stack() as bench:
        answer = run_child(
            "benchmarks.warm",
            {"api_key": bench.api_key, "rounds": ROUNDS},
            child_environment(bench.environment),
        )
        database = bench.database
    figures = answer["figures"]
    result = Result(name="warm")
    for scenario, by_handler in figures.items():
        api, bare, peer = by_handler["api"], by_handler["bare"], by_handler["peer"]
        result.ratios[f"{scenario}_cpu_api_over_bare"] = api["cpu_us"] / bare["cpu_us"]
        result.ratios[f"{scenario}_cpu_api_over_peer"] = api["cpu_us"] / peer["cpu_us"]
        result.ratios[f"{scenario}_wall_api_over_bare"] = api["wall_us"] / bare["wall_us"]
        result.ratios[f"{scenario}_wall_api_over_peer"] = api["wall_us"] / peer["wall_us"]
        if scenario != "attack":
            result.targets[f"{scenario}: chain <= {CHAIN_LIMIT}x bare resolver (CPU)"] = (
                api["cpu_us"] <= CHAIN_LIMIT * bare["cpu_us"]
            )
        result.targets[f"{scenario}: faster than FastAPI+Mangum (CPU)"] = (
            api["cpu_us"] < peer["cpu_us"]
        )
    result.figures = {"per_call": figures, "calls_per_batch": answer["calls_per_batch"]}
    result.notes += [
        f"best of {ROUNDS} interleaved rounds of ~{BATCH_SECONDS}s batches per handler",
        f"local stack on {database}; moto server and PostgreSQL outside the measured process",
        "attack: the bare resolver has no inspection and serves it (200, a search); "
        "no chain target there, the ratio shows what refusing early saves",
    ]
    return result


if __name__ == "__main__" and not child_main(child):
    res = run()
    res.write()
    res.print_table()
    sys.exit(0)
