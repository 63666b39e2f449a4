"""The benchmarks' method: what each result file holds, what the HTTP figures count,
and that the peer does the work our handler does on the paths the benchmarks
measure.

Each test drives the real part: a result written by `Result.write`, wrk against a
loopback server through `benchmarks.http.load`, the peer and our handler each in
a fresh interpreter with only `AWS_REGION` set.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks.common import ROOT, Result
from benchmarks.stack import child_environment
from benchmarks.warm import ATTACK_QUERY


def test_result_file_puts_the_ratios_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every result file puts its ratios first: someone opening coldstart.json reads
    the ratio before the figures (every target's medians, the ten imports)."""
    # Given a result with ratios and figures, written where the smoke test writes
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    result = Result(
        name="ratio_order",
        ratios={"api_vs_fastapi_mangum": 0.73},
        figures={"targets": {"api": {"total_ms": 776.1}}, "shared_io_ms": 424.4},
        targets={"api cold start <= 0.6x FastAPI+Mangum": False},
    )

    # When it is written
    path = result.write()

    # Then the machine is recorded, and the ratios come before the figures in the file
    found = json.loads(path.read_text())
    assert {"cpu", "cores", "python", "commit"} <= set(found["machine"])
    keys = list(found)
    assert keys.index("ratios") < keys.index("figures"), keys
    assert keys.index("ratios") < keys.index("machine"), keys


class _Unavailable(BaseHTTPRequestHandler):
    """Every request answered 503 with a small JSON body, over keep-alive."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"error":"service_unavailable"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.timeout(60)
def test_http_throughput_counts_only_successful_answers(failing_server: int):
    """http.json's requests/s count answered requests only: a server answering
    nothing but 503s has no throughput."""
    from benchmarks.http import load, wrk_command

    try:
        wrk_command()
    except RuntimeError:
        pytest.skip("wrk is not installed (make wrk)")

    # When one second of load runs against a server that answers every request 503
    level = load(failing_server, "bsk_unused", 1, 1.0)

    # Then every answer is an error, and none of them counts as throughput
    assert level["requests"] > 0
    assert level["errors"] == level["requests"]
    assert level["per_second"] == 0.0, level


_LOG_ATTACK = r"""
import importlib, json, sys
from ops.apigw import LocalLambdaContext, rest_event

module, attr, query = sys.argv[1:4]
handler = getattr(importlib.import_module(module), attr)
answer = handler(rest_event("GET", "/recalls", query=query), LocalLambdaContext())
print("STATUS " + str(answer["statusCode"]))
"""


def _refusal_log_lines(module: str, attr: str) -> tuple[str, list[dict[str, object]]]:
    proc = subprocess.run(
        [sys.executable, "-c", _LOG_ATTACK, module, attr, ATTACK_QUERY],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status = next(line for line in proc.stdout.splitlines() if line.startswith("STATUS "))
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return status, [r for r in records if r.get("event") == "input_rejected"]


def test_peer_records_the_attack_refusal_as_our_handler_does():
    """The warm and memory benchmarks time a refused SQL-injection request on both
    handlers, and only framework cost may differ: the peer writes the same audit line
    of the refusal (category, rule, part) as our handler."""
    # When our handler and the peer each refuse the warm benchmark's attack request
    ours_status, ours = _refusal_log_lines("functions.api.handler", "lambda_handler")
    peer_status, peer = _refusal_log_lines("benchmarks.peers.fastapi_app", "handler")

    # Then both answer 400, and both record the refusal the same way
    assert ours_status == peer_status == "STATUS 400"
    assert len(ours) == 1
    assert [
        {k: r.get(k) for k in ("audit", "category", "rule", "part", "level")} for r in peer
    ] == [{k: r.get(k) for k in ("audit", "category", "rule", "part", "level")} for r in ours]
