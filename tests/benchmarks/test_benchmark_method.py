"""The benchmarks' method: what each result file holds, what the HTTP figures count,
what the cold-start figures are computed from, and that the peer does the work our
handler does on the paths the benchmarks measure.

Each test drives the real part: a result written by `Result.write`, wrk against a
loopback server through `benchmarks.http.load` and `benchmarks.http.run`,
`benchmarks.coldstart.run` with its child processes replaced by fixed figures, the
peer and our handler each in a fresh interpreter with only `AWS_REGION` set.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.common import ROOT, Result, lambda_runtime_environment
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


class _Ok(BaseHTTPRequestHandler):
    """Every request answered with `status` and a small JSON body, over keep-alive."""

    protocol_version = "HTTP/1.1"
    status = 200
    body = b'{"status":"ok"}'

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Unavailable(_Ok):
    status = 503
    body = b'{"error":"service_unavailable"}'


@contextmanager
def _http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def _silent_server() -> Iterator[int]:
    """Accepts connections and reads requests, never answers: a stalled handler (a
    pool waiting forever, a deadlock in the one-event-at-a-time front)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        for conn in held:
            conn.close()
        thread.join(timeout=5)


@contextmanager
def _server_that_stalls_after(answers: int) -> Iterator[int]:
    """Answers its first `answers` requests, then holds every later one unanswered:
    a pool that runs dry after a few requests."""
    release = threading.Event()
    lock = threading.Lock()
    answered = [0]

    class Stalling(_Ok):
        def do_GET(self) -> None:
            with lock:
                answered[0] += 1
                stall = answered[0] > answers
            if stall:
                release.wait(timeout=30)
                return
            super().do_GET()

    with _http_server(Stalling) as port:
        try:
            yield port
        finally:
            release.set()


def _require_wrk() -> None:
    from benchmarks.http import wrk_command

    try:
        wrk_command()
    except RuntimeError:
        pytest.skip("wrk is not installed (make wrk)")


@pytest.fixture
def failing_server() -> Iterator[int]:
    with _http_server(_Unavailable) as port:
        yield port


@pytest.mark.timeout(60)
def test_http_throughput_counts_only_successful_answers(failing_server: int):
    """http.json's requests/s count answered requests only: a server answering
    nothing but 503s has no throughput."""
    from benchmarks.http import load

    _require_wrk()

    # When one second of load runs against a server that answers every request 503
    level = load(failing_server, "bsk_unused", 1, 1.0)

    # Then every answer is an error, and none of them counts as throughput
    assert level["requests"] > 0
    assert level["errors"] == level["requests"]
    assert level["per_second"] == 0.0, level


@pytest.mark.timeout(60)
def test_http_requests_left_unanswered_past_the_timeout_are_errors():
    """wrk counts a request as timed out only when its answer finally arrives, and
    reconnects silently when the server closes a connection: a server that stops
    answering mid-level would end it with no error at all. The load script reports
    what it sent, and a request still unanswered at the end of the level after more
    than the request timeout without any answer is an error."""
    from benchmarks.http import load

    _require_wrk()

    # Given a server that answers five requests and then none
    with _server_that_stalls_after(5) as port:
        # When a level of four seconds runs against it at two connections
        level = load(port, "bsk_unused", 2, 4.0)

    # Then the five answers count, and both connections' last requests are errors
    assert level["requests"] == 5, level
    assert level["sent"] == 7, level
    assert level["errors_by_kind"]["unanswered"] == 2, level
    assert level["errors"] == 2, level


@contextmanager
def no_stack() -> Iterator[Any]:
    """Stands in for the local stack where a test serves or fixes every figure itself."""
    yield SimpleNamespace(
        api_key="unused",  # pragma: allowlist secret
        environment={},
        database="none",
    )


@pytest.mark.timeout(60)
def test_http_level_where_the_api_answers_nothing_fails_its_error_target(
    monkeypatch: pytest.MonkeyPatch,
):
    """ "0 errors at every level" is the HTTP benchmark's target: a front that takes
    connections and never answers has no error either (nothing was answered, nothing
    timed out), and must not meet it; nor may a ratio be made against a side that
    answered nothing (its p99 is 0, its requests/s 0)."""
    import benchmarks.http as http

    _require_wrk()

    @contextmanager
    def serving(name: str, environment: dict[str, str]) -> Iterator[int]:
        with _silent_server() if name == "api" else _http_server(_Ok) as port:
            yield port

    full_load = http.load

    def short_load(port: int, api_key: str, concurrency: int, seconds: float = 1.0) -> Any:
        return full_load(port, api_key, concurrency, 1.0)

    monkeypatch.setattr(http, "running_stack", no_stack)
    monkeypatch.setattr(http, "serving", serving)
    monkeypatch.setattr(http, "load", short_load)
    monkeypatch.setattr(http, "LEVELS", [1])

    # When the HTTP benchmark runs against an API front that never answers
    result = http.run()

    # Then the API answered nothing, its level fails the target, and no ratio is made
    api = result.figures["by_handler"]["api"]["1"]
    assert api["requests"] == 0, api
    assert result.targets["c1: 0 errors"] is False, (result.targets, api)
    assert result.ratios == {}, result.ratios


# The medians of the run recorded at commit 5e4b7ea (docs/PERFORMANCE.md, the round
# headed with that commit), in seconds: (import, first events). Totals:
# api_health 219.0, peer_health 405.4, api 521.0, peer 675.9 ms.
RECORDED_COLD_STARTS = {
    "floor": (0.0031, 0.0),
    "api_health": (0.2176, 0.0014),
    "peer_health": (0.3844, 0.0210),
    "api": (0.2272, 0.2938),
    "peer": (0.3844, 0.2915),
    "rotate_db": (0.2644, 0.0017),
    "rotate_jwt": (0.2634, 0.0016),
    "rotate_iam": (0.2609, 0.0015),
    "waf_responder": (0.3098, 0.0010),
}


def _coldstart_with(
    monkeypatch: pytest.MonkeyPatch, figures: dict[str, tuple[float, float]]
) -> Result:
    """`coldstart.run()` with each child's figures fixed and no stack started."""
    import benchmarks.coldstart as coldstart

    def fixed(name: str, target: dict[str, Any]) -> dict[str, Any]:
        imported, first = figures[name]
        return {
            "import_s": imported,
            "first_s": first,
            "cpu_s": imported + first,
            "rss_kb": 40_000,
            "outcomes": target["expect"],
        }

    monkeypatch.setattr(coldstart, "running_stack", no_stack)
    monkeypatch.setattr(coldstart, "run_once", fixed)
    monkeypatch.setattr(coldstart, "import_profile", lambda module: [])
    return coldstart.run()


def test_coldstart_shared_part_is_no_more_than_either_handler_pays_beyond_health(
    monkeypatch: pytest.MonkeyPatch,
):
    """`shared_io_ms` is what both handlers pay for the authenticated request beyond
    `/health`, and PERFORMANCE.md bounds the cold-start ratio with it: it cannot
    exceed what the peer pays there (the peer builds its models at import, ours on
    the first request). Each handler's increment is recorded, and the shared part is
    the smaller of the two."""
    # Given the medians of a recorded run
    result = _coldstart_with(monkeypatch, RECORDED_COLD_STARTS)
    figures = result.figures

    # Then both increments are recorded, and the shared part is at most either
    assert figures["api_recalls_increment_ms"] == pytest.approx(302.0, abs=0.05)
    assert figures["peer_recalls_increment_ms"] == pytest.approx(270.5, abs=0.05)
    assert figures["shared_io_ms"] == pytest.approx(270.5, abs=0.05)


def test_coldstart_health_targets_get_lambdas_environment_and_no_stack_settings(
    monkeypatch: pytest.MonkeyPatch,
):
    """coldstart.json says what the `*_health` targets run with, and PERFORMANCE.md's
    ratio row repeats it: every child gets Lambda's runtime environment (without it
    Powertools and the X-Ray SDK take paths Lambda never runs), and the `/health`-only
    children nothing of the stack (no endpoint, no table, no secret)."""
    import benchmarks.coldstart as coldstart

    seen: dict[str, dict[str, str]] = {}

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        spec = json.loads(command[-1])
        seen[spec["module"]] = kwargs["env"]
        line = {"import_s": 0.1, "first_s": 0.0, "cpu_s": 0.1, "rss_kb": 1, "outcomes": ["200"]}
        return subprocess.CompletedProcess(command, 0, "BENCH " + json.dumps(line), "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    bench = SimpleNamespace(
        api_key="unused",  # pragma: allowlist secret
        environment={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"},
        database="none",
    )
    chosen = coldstart.targets(bench)  # type: ignore[arg-type]

    # When the /health-only target of our handler runs
    coldstart.run_once("api_health", chosen["api_health"])

    # Then its child has the region and Lambda's runtime environment, nothing else
    runtime = lambda_runtime_environment(ROOT, "api_health", coldstart.PYTHON)
    assert seen["functions.api.handler"] == child_environment(runtime)
    # And the note coldstart.json carries says so
    monkeypatch.undo()
    notes = _coldstart_with(monkeypatch, RECORDED_COLD_STARTS).notes
    health_note = next(note for note in notes if note.startswith("*_health"))
    assert "Lambda's runtime environment" in health_note, health_note
    assert "no stack settings" in health_note, health_note


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


# What Powertools' inject_lambda_context adds to every line an invocation logs.
LAMBDA_CONTEXT_KEYS = {"correlation_id", "function_request_id", "function_name", "cold_start"}


def test_peer_records_the_attack_refusal_as_our_handler_does():
    """The warm and memory benchmarks time a refused SQL-injection request on both
    handlers, and only framework cost may differ: the peer writes the same audit line
    of the refusal (category, rule, part) as our handler, with the invocation's
    context on it, since it runs under the same logger and metrics decorators (about
    20 µs per invocation that every figure would otherwise charge to ours alone)."""
    # When our handler and the peer each refuse the warm benchmark's attack request
    ours_status, ours = _refusal_log_lines("functions.api.handler", "lambda_handler")
    peer_status, peer = _refusal_log_lines("benchmarks.peers.fastapi_app", "handler")

    # Then both answer 400, and both record the refusal the same way
    assert ours_status == peer_status == "STATUS 400"
    assert len(ours) == 1
    assert [
        {k: r.get(k) for k in ("audit", "category", "rule", "part", "level")} for r in peer
    ] == [{k: r.get(k) for k in ("audit", "category", "rule", "part", "level")} for r in ours]
    # And both lines carry the invocation's context
    assert set(ours[0]) >= LAMBDA_CONTEXT_KEYS, ours[0]
    missing = LAMBDA_CONTEXT_KEYS - set(peer[0])
    assert not missing, f"the peer's refusal line lacks {sorted(missing)}: {peer[0]}"
