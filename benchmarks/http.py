"""Over HTTP: the local stack under a bounded load from a second process, vs the peer.

The server is the local stack's own front (ops/local_server.py behind
ops/local_edge.py: the WAF rules and WAF log records of `make run`) on
127.0.0.1, serving either our handler or the FastAPI+Mangum peer, one event at
a time as a Lambda instance does. The load comes from wrk (Debian's package,
unpacked into .tools/wrk by `make wrk`) running benchmarks/wrk_load.lua: N
keep-alive connections alternating `GET /health` and an authenticated
`GET /recalls` for a fixed time per level.

Nothing leaves the loopback interface, every level is bounded in time
(BENCH_HTTP_SECONDS, default 30) and in requests (BENCH_HTTP_MAX_REQUESTS), and
any answer other than 200 counts as an error, as does any socket error or
timeout wrk reports and any request left unanswered (wrk_load.lua: beyond the
one each connection may have in flight when the level ends, or all of them when
no answer came for longer than the request timeout). A level at which the API
answered nothing fails its target, and no ratio is made at a level where either
side answered nothing. Each server first gets an unrecorded warm-up of
WARM_UP_SECONDS at one connection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Result, bench_line
from benchmarks.stack import child_environment, running_stack

SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "30"))
MAX_REQUESTS = int(os.environ.get("BENCH_HTTP_MAX_REQUESTS", "200000"))
LEVELS = [int(c) for c in os.environ.get("BENCH_HTTP_CONCURRENCY", "1,4,16").split(",")]
LOOPBACK = "127.0.0.1"
# The local edge's per-address rate rule, set out of the way: the test measures
# throughput, not the rule (tests/integration/ops covers the rule).
EDGE_RATE_LIMIT = 1_000_000_000
WRK_ROOT = ROOT / ".tools" / "wrk"
LOAD_SCRIPT = Path(__file__).with_name("wrk_load.lua")
WARM_UP_SECONDS = min(2.0, SECONDS)
# A request unanswered after this long is an error. Well below a level's length,
# so a server that stalls cannot sit out the level without one; the slowest p99
# recorded (sixteen connections) is about a third of a second.
REQUEST_TIMEOUT_S = 5
# wrk threads: the server needs the other core of this 2-core machine.
WRK_THREADS = 1


def wrk_command() -> tuple[list[str], dict[str, str]]:
    """wrk as `make wrk` unpacked it (with its LuaJIT), else one on PATH."""
    unpacked = WRK_ROOT / "usr" / "bin" / "wrk"
    if unpacked.exists():
        libraries = sorted({str(lib.parent) for lib in WRK_ROOT.glob("usr/lib/*/libluajit*")})
        return [str(unpacked)], {"LD_LIBRARY_PATH": ":".join(libraries)}
    found = shutil.which("wrk")
    if found:
        return [found], {}
    raise RuntimeError("wrk is not installed: run `make wrk` (or `make bench`, which does)")


def request_timeout(duration_s: int) -> int:
    """REQUEST_TIMEOUT_S, or a quarter of a shorter level; wrk takes whole seconds."""
    return max(1, min(REQUEST_TIMEOUT_S, duration_s // 4))


def load(port: int, api_key: str, concurrency: int, seconds: float = SECONDS) -> dict[str, Any]:
    """One level: wrk with `concurrency` connections for `seconds` against 127.0.0.1:port."""
    command, environment = wrk_command()
    threads = min(WRK_THREADS, concurrency)
    duration = max(1, round(seconds))
    timeout = request_timeout(duration)
    proc = subprocess.run(
        [
            *command,
            f"--threads={threads}",
            f"--connections={concurrency}",
            f"--duration={duration}s",
            f"--timeout={timeout}s",
            f"--script={LOAD_SCRIPT}",
            f"http://{LOOPBACK}:{port}",
        ],
        env={
            "PATH": os.environ.get("PATH", ""),
            **environment,
            "BENCH_API_KEY": api_key,
            "BENCH_MAX_PER_THREAD": str(max(1, MAX_REQUESTS // threads)),
            # wrk gives each thread connections // threads
            "BENCH_CONNECTIONS_PER_THREAD": str(concurrency // threads),
            "BENCH_TIMEOUT_S": str(timeout),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    raw = bench_line(proc, f"wrk at concurrency {concurrency}")
    seconds = raw["duration_us"] / 1e6
    # A read or write error already counts the request it lost.
    unanswered = max(0, raw["unanswered"] - raw["read"] - raw["write"])
    by_kind = {kind: raw[kind] for kind in ("not_ok", "connect", "read", "write", "timeout")}
    by_kind["unanswered"] = unanswered
    return {
        "requests": raw["requests"],
        "sent": raw["sent"],
        # wrk runs for the whole duration even when every thread stopped at its
        # budget, so a capped level's requests/s is a lower bound.
        "capped": raw["requests"] >= max(1, MAX_REQUESTS // threads) * threads,
        "errors": sum(by_kind.values()),
        "errors_by_kind": by_kind,
        "timeout_s": timeout,
        "seconds": seconds,
        # Answered requests only: a fast 503 is no throughput.
        "per_second": (raw["requests"] - raw["not_ok"]) / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def _answered(level: dict[str, Any]) -> int:
    """Requests answered 200 at a level."""
    answered: int = level["requests"] - level["errors_by_kind"]["not_ok"]
    return answered


def _api_handler() -> Any:
    from functions.api.handler import lambda_handler

    return lambda_handler


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
    from functions.shared.blocks import aws_client
    from ops.local_edge import EdgeIpSets, LocalEdge
    from ops.local_server import LocalApiServer
    from ops.local_stack import WAF_LOG_STREAM

    # Only the handler served is imported: the other's modules would weigh on this
    # process's garbage collections, and so on its tail latency.
    handler = _api_handler() if name == "api" else _peer_handler()
    edge = LocalEdge(
        handler,
        rate_limit=EDGE_RATE_LIMIT,
        ip_sets=EdgeIpSets.from_environment(os.environ),
        aws_client=aws_client,
        log_stream=WAF_LOG_STREAM,
    )
    server = LocalApiServer((LOOPBACK, 0), edge, quiet=True)
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
            # Unrecorded warm-up: each server's first requests pay its cold start (the
            # database connection, the first botocore clients) and the moto server
            # loads each service's backend on its first call; whichever server the
            # first level measured first would carry all of that in its tail.
            for port in ports.values():
                load(port, bench.api_key, 1, WARM_UP_SECONDS)
            # Levels interleaved between the two servers, so drift hits both.
            for concurrency in LEVELS:
                for name, port in ports.items():
                    figures[name][str(concurrency)] = load(port, bench.api_key, concurrency)
        database = bench.database
    result = Result(name="http")
    for level in map(str, LEVELS):
        api, peer = figures["api"][level], figures["peer"][level]
        # A level with nothing answered has no error either; it is no pass.
        result.targets[f"c{level}: 0 errors"] = api["errors"] == 0 and api["requests"] > 0
        silent = [name for name, side in (("api", api), ("peer", peer)) if not _answered(side)]
        if silent:
            # Its p99 would be 0 and its requests/s 0: no ratio means anything.
            result.notes.append(f"c{level}: {' and '.join(silent)} answered nothing; no ratio")
            continue
        if peer["errors"]:
            # A peer that fails fast would flatter itself: no ratio against it.
            result.notes.append(f"c{level}: the peer had {peer['errors']} errors; no ratio")
            continue
        result.ratios[f"c{level}_throughput_api_over_peer"] = api["per_second"] / peer["per_second"]
        result.ratios[f"c{level}_p99_api_over_peer"] = api["p99_ms"] / peer["p99_ms"]
    result.figures = {
        "by_handler": figures,
        "seconds_per_level": SECONDS,
        "request_timeout_s": request_timeout(max(1, round(SECONDS))),
    }
    if any(level["capped"] for levels in figures.values() for level in levels.values()):
        result.notes.append(
            "a level reached BENCH_HTTP_MAX_REQUESTS: its requests/s is a lower bound"
        )
    result.notes += [
        f"load: wrk ({WRK_THREADS} thread), N keep-alive connections, /health and "
        "authenticated /recalls alternating (benchmarks/wrk_load.lua); loopback only",
        "errors: non-200 answers, socket errors, answers after the request timeout, "
        "requests left unanswered; a level with nothing answered does not meet its target",
        "server: ops/local_server.py behind ops/local_edge.py (one event at a time, "
        "WAF log record and IP-set check per request on the moto server), with "
        "TCP_NODELAY: without it each keep-alive response waits ~40 ms for a delayed ACK",
        f"local stack on {database}",
    ]
    return result


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--serve":
    serve(sys.argv[2], sys.argv[3])
elif __name__ == "__main__":
    res = run()
    res.write()
    res.print_table()
    sys.exit(0)
