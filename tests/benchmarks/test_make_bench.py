"""`make bench` end to end, at the smallest settings: every benchmark runs in one
process, after the others, and writes its result file.

The figures of such a run mean nothing (one cold start, a second of HTTP load);
what this protects is that the suite runs on a clean checkout at all: a
benchmark that leaves state behind for the next one, or a missing tool, fails
here instead of in the next performance round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS
from benchmarks.common import ROOT
from benchmarks.http import wrk_command

SMALLEST = {
    "BENCH_COLDSTART_RUNS": "1",
    "BENCH_WARM_ROUNDS": "1",
    "BENCH_WARM_BATCH_SECONDS": "0.02",
    "BENCH_MEMORY_REQUESTS": "200",
    "BENCH_DB_SAMPLES": "20",
    "BENCH_HTTP_SECONDS": "1",
    "BENCH_HTTP_CONCURRENCY": "2",
}


# The whole suite, with the first build of the packaged functions' layer, can take
# longer than the default per-test limit; the child's own timeout is the bound.
@pytest.mark.timeout(960)
def test_every_benchmark_runs_in_one_process_and_writes_its_result(tmp_path: Path):
    # Given wrk where make bench puts it (make test installs it too)
    wrk_command()

    # When every benchmark runs, in make bench's order, at the smallest settings
    env = {**os.environ, **SMALLEST, "BENCH_RESULTS_DIR": str(tmp_path)}
    env.pop("AWS_ENDPOINT_URL", None)  # the benchmarks start their own moto servers
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    # Then it exits 0 and each wrote a result with the machine, ratios and targets
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in BENCHMARKS:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["name"] == name
        assert {"commit", "cores", "cpu", "python"} <= set(result["machine"])
        assert isinstance(result["ratios"], dict)
        assert isinstance(result["targets"], dict)
    # And what is correctness, not speed, held even at this size
    rotation = json.loads((tmp_path / "rotation.json").read_text())
    assert rotation["figures"]["load_during_rotation"]["failed"] == 0
    package = json.loads((tmp_path / "package.json").read_text())
    assert all(package["targets"].values()), package["targets"]
    clients = package["figures"]["botocore_clients"]
    assert clients["shipped"]["services"] < clients["all_services"]["services"]
    # (a server that answers nothing has no errors either: both must have answered)
    http = json.loads((tmp_path / "http.json").read_text())
    for handler in ("api", "peer"):
        level = http["figures"]["by_handler"][handler]["2"]
        assert level["requests"] > 0, (handler, level)
        assert level["errors"] == 0, (handler, level)
    assert http["targets"] == {"c2: 0 errors": True}, http
    assert set(http["ratios"]) == {"c2_throughput_api_over_peer", "c2_p99_api_over_peer"}
