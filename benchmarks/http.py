"""Over HTTP: the local stack under a bounded load from a second process, vs the peer.

The server is the local stack's own front (ops/local_server.py behind
ops/local_edge.py: the WAF rules and WAF log records of `make run`) on
127.0.0.1, serving either our handler or the FastAPI+Mangum peer, one event at
a time as a Lambda instance does. The load comes from a second Python process
(this module with `--child`): a fixed number of threads, each with one
keep-alive `http.client` connection, alternating `GET /health` and an
authenticated `GET /recalls` for a fixed time per level, then stopping.

Nothing leaves the loopback interface, every level is bounded in time
(BENCH_HTTP_SECONDS, default 30) and in requests (BENCH_HTTP_MAX_REQUESTS), and
any answer other than 200 counts as an error. The load generator needs nothing
outside the project, so `make bench` runs on a clean clone.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Result
from benchmarks.stack import child_environment, child_main, run_child, running_stack

SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "30"))
MAX_REQUESTS = int(os.environ.get("BENCH_HTTP_MAX_REQUESTS", "200000"))
LEVELS = [int(c) for c in os.environ.get("BENCH_HTTP_CONCURRENCY", "1,4,16").split(",")]
LOOPBACK = "127.0.0.1"
# The local edge's per-address rate rule, set out of the way: the test measures
# throughput, not the rule (tests/integration/ops covers the rule).
EDGE_RATE_LIMIT = 1_000_000_000


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """The load generator: `concurrency` keep-alive connections for `seconds`."""
    import http.client

    if spec["host"] != LOOPBACK:
        raise ValueError("the load generator only sends to 127.0.0.1")
    requests = [
        ("/health", {}),
        ("/recalls?q=crib&limit=20", {"x-api-key": spec["api_key"]}),
    ]
    deadline = time.monotonic() + spec["seconds"]
    budget = threading.Semaphore(spec["max_requests"])
    latencies: list[list[float]] = [[] for _ in range(spec["concurrency"])]
    errors = [0] * spec["concurrency"]

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
        sent = index
        while time.monotonic() < deadline and budget.acquire(blocking=False):
            path, headers = requests[sent % len(requests)]
            sent += 1
            start = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
            latencies[index].append(time.perf_counter() - start)
            if not ok:
                errors[index] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(spec["concurrency"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(x for found in latencies for x in found)
    return {
        "requests": len(every),
        "errors": sum(errors),
        "seconds": elapsed,
        "per_second": len(every) / elapsed,
        "p50_ms": statistics.median(every) * 1000 if every else 0.0,
        "p99_ms": every[max(0, int(len(every) * 0.99) - 1)] * 1000 if every else 0.0,
    }


def _peer_handler() -> Any:
    """The peer as a server thread can call it: Mangum runs its cycle on the calling
    thread's event loop, which the Lambda runtime's main thread has and a server
    thread does not."""
    import asyncio

    from benchmarks.peers.fastapi_app import handler

    local = threading.local()

    def call(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if getattr(local, "loop", None) is None:
            local.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(local.loop)
        answer: dict[str, Any] = handler(event, context)
        return answer

    return call


def serve(name: str, port_file: str) -> None:
    """The server process: one local front for `name` on a free loopback port.

    Runs in its own process so the handler's per-request log lines go to its
    discarded stdout (as they would go to CloudWatch), not into `make bench`'s
    output; it writes its port to `port_file` and serves until terminated.
    """
    from functions.api.handler import lambda_handler
    from functions.shared.blocks import aws_client
    from ops.local_edge import LocalEdge
    from ops.local_server import LocalApiServer, _RequestHandler
    from ops.local_stack import WAF_LOG_STREAM

    class NoDelayHandler(_RequestHandler):
        # ops/local_server.py writes headers and body in two sends and leaves Nagle on,
        # so on a keep-alive connection every response waits ~40 ms for the client's
        # delayed ACK: the figures would measure that timer, not the API.
        disable_nagle_algorithm = True

    handler = lambda_handler if name == "api" else _peer_handler()
    edge = LocalEdge(
        handler,
        rate_limit=EDGE_RATE_LIMIT,
        ipset_ids={
            4: os.environ["AUTO_BLOCK_IPSET_V4_ID"],
            6: os.environ["AUTO_BLOCK_IPSET_V6_ID"],
        },
        aws_client=aws_client,
        log_stream=WAF_LOG_STREAM,
    )
    server = LocalApiServer((LOOPBACK, 0), edge, quiet=True)
    server.RequestHandlerClass = NoDelayHandler
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


@contextmanager
def serving(name: str, environment: dict[str, str]) -> Iterator[int]:
    """Start the server process for `name`; yield its port; stop it (by its own pid)."""
    with tempfile.TemporaryDirectory(prefix="babyshield-bench-") as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.http", "--serve", name, str(port_file)],
            cwd=ROOT,
            env=child_environment(environment),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {name} server did not start")
                time.sleep(0.1)
            yield int(port_file.read_text())
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run() -> Result:
    figures: dict[str, dict[str, dict[str, Any]]] = {"api": {}, "peer": {}}
    with running_stack() as bench:
        environment = bench.environment
        with serving("api", environment) as api_port, serving("peer", environment) as peer_port:
            ports = {"api": api_port, "peer": peer_port}
            # Levels interleaved between the two servers, so drift hits both.
            for concurrency in LEVELS:
                for name, port in ports.items():
                    figures[name][str(concurrency)] = run_child(
                        "benchmarks.http",
                        {
                            "host": LOOPBACK,
                            "port": port,
                            "api_key": bench.api_key,
                            "concurrency": concurrency,
                            "seconds": SECONDS,
                            "max_requests": MAX_REQUESTS,
                        },
                        child_environment(),
                    )
        database = bench.database
    result = Result(name="http")
    for level in map(str, LEVELS):
        api, peer = figures["api"][level], figures["peer"][level]
        result.ratios[f"c{level}_throughput_api_over_peer"] = api["per_second"] / peer["per_second"]
        result.ratios[f"c{level}_p99_api_over_peer"] = api["p99_ms"] / peer["p99_ms"]
        result.targets[f"c{level}: 0 errors"] = api["errors"] == 0
    result.figures = {"by_handler": figures, "seconds_per_level": SECONDS}
    result.notes += [
        "load: a second process, N keep-alive connections, /health and authenticated "
        "/recalls alternating; loopback only",
        "server: ops/local_server.py behind ops/local_edge.py (one event at a time, "
        "WAF log record and IP-set check per request on the moto server), with "
        "TCP_NODELAY: without it each keep-alive response waits ~40 ms for a delayed ACK",
        f"local stack on {database}",
    ]
    return result


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--serve":
    serve(sys.argv[2], sys.argv[3])
elif __name__ == "__main__" and not child_main(child):
    res = run()
    res.write()
    res.print_table()
    sys.exit(0)
