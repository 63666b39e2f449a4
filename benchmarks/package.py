"""Cold start of the deployment packages, as Lambda runs them.

`coldstart` measures the handlers from this checkout, where every module has
bytecode cached by an earlier import. A deployed function has only what its
zip holds, in a read-only `/var/task` and `/opt`: a module without usable
bytecode there is compiled from source in every new execution environment.
This benchmark measures the packages themselves:

- each function's code asset and a dependency layer from the same lock file,
  built by `cdk/assets.py` as `make synth` builds them, for this machine's
  platform so they can run here (the deployed layer is arm64);
- unpacked with the zip's dates (`cdk.assets.unpack_like_lambda`) and run by an
  interpreter of the runtime's Python version with bytecode writing off and the
  environment Lambda's runtime sets (`lambda_runtime_environment`);
- `bytecode`: the packages as built (hash-checked bytecode for the runtime),
  against `sources`: the same packages without it, which is what a package
  built with `pip install --no-compile`, or one whose timestamp-checked bytecode
  the zip's dates invalidate, gives Lambda.

Also the botocore clients the API's first authenticated request builds
(Secrets Manager for the database login, DynamoDB for the key's count), from
the layer as shipped, whose botocore keeps only the services the functions call
(`cdk.assets.BOTOCORE_SERVICES`), against the same layer with every service's
model: a client's first creation lists every service directory botocore ships.

The events are `coldstart`'s: the API answers `GET /health` with nothing in the
environment but `AWS_REGION`, the rotation functions reject an unknown Step,
the responder a foreign event. Median of BENCH_COLDSTART_RUNS processes per
target, in interleaved rounds. One more process per target counts the modules
compiled from source while it starts: the target is none for the packages as
built.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.coldstart import (
    CHILD,
    FOREIGN_EVENT,
    ROTATION_EVENT,
    RUNS,
    api_events,
    summarise,
)
from benchmarks.common import Result, bench_line, lambda_runtime_environment
from cdk import assets
from cdk.assets import LAMBDA_PYTHON_VERSION

FUNCTIONS = ("api", "rotate_db", "rotate_jwt", "rotate_iam", "waf_responder")

# Prepended to a child script: every module compiled from source is recorded and
# printed at exit as `COMPILED [paths]` (see compiled_paths).
COUNTING = r"""
import atexit, importlib.machinery, json
compiled = []
_compile = importlib.machinery.SourceFileLoader.source_to_code
def _recording(self, data, path, *args, **kwargs):
    compiled.append(path)
    return _compile(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = _recording
atexit.register(lambda: print("COMPILED " + json.dumps(compiled)))
"""


def compiled_paths(stdout: str) -> list[str]:
    """The paths a child that ran COUNTING compiled from source."""
    line = next(x for x in stdout.splitlines() if x.startswith("COMPILED "))
    found: list[str] = json.loads(line.removeprefix("COMPILED "))
    return found


def events_for(package: str) -> tuple[list[dict[str, Any]], list[str]]:
    if package == "api":
        return api_events(None), ["200"]
    if package == "waf_responder":
        return [FOREIGN_EVENT], ["rejected"]
    return [ROTATION_EVENT], ["RotationError"]


def without_bytecode(tree: Path) -> None:
    for cache in list(tree.rglob("__pycache__")):
        shutil.rmtree(cache)


def lay_out(work: Path) -> dict[str, dict[str, Any]]:
    """name -> the unpacked package and its events, for both variants of each function.

    Each variant's layer is unpacked once and shared by every function, as one
    layer is in Lambda.
    """
    layer, _ = assets.dependency_layer_dir(platforms=assets.HOST_PLATFORMS)
    opts = {
        "bytecode": assets.unpack_like_lambda(layer, work / "opt-bytecode"),
        "sources": assets.unpack_like_lambda(layer, work / "opt-sources"),
    }
    without_bytecode(opts["sources"])
    found: dict[str, dict[str, Any]] = {}
    for package in FUNCTIONS:
        code, _ = assets.function_code_dir(package)
        events, expect = events_for(package)
        for variant, opt in opts.items():
            task = assets.unpack_like_lambda(code, work / f"{package}-{variant}")
            if variant == "sources":
                without_bytecode(task)
            found[f"{package}:{variant}"] = {
                "root": task,
                "packaged": (str(task), str(opt)),
                "name": package,
                "path": f"{task}:{opt / 'python'}",
                "module": f"functions.{package}.handler",
                "events": events,
                "expect": expect,
            }
    return found


# Run by the runtime's Python on an unpacked layer: botocore's import, then the two
# clients an authenticated API request creates, from one session as the API does.
CLIENTS_CHILD = r"""
import json, time
start = time.perf_counter()
import botocore.session
imported = time.perf_counter()
session = botocore.session.get_session()
for service in ("secretsmanager", "dynamodb"):
    session.create_client(
        service, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
done = time.perf_counter()
print("BENCH " + json.dumps({
    "import_s": imported - start, "clients_s": done - imported,
    "services": len(session.get_available_services()),
}))
"""


def lay_out_layers(work: Path) -> dict[str, Path]:
    """variant -> an unpacked layer's python/: as shipped (lay_out's, already
    unpacked), and with every botocore model."""
    full, _ = assets.dependency_layer_dir(platforms=assets.HOST_PLATFORMS, botocore_services=None)
    return {
        "shipped": work / "opt-bytecode" / "python",
        "all_services": assets.unpack_like_lambda(full, work / "opt-all-services") / "python",
    }


def clients_once(variant: str, site: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [assets.lambda_python(), "-c", CLIENTS_CHILD],
        cwd=site,
        env={"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    return bench_line(proc, f"botocore clients from the {variant} layer")


def run_once(name: str, target: dict[str, Any], *, counting: bool = False) -> dict[str, Any]:
    spec = json.dumps(
        {"module": target["module"], "attr": "lambda_handler", "events": target["events"]}
    )
    proc = subprocess.run(
        [assets.lambda_python(), "-c", (COUNTING if counting else "") + CHILD, spec],
        cwd=target["root"],
        env={
            **lambda_runtime_environment(target["root"], target["name"], LAMBDA_PYTHON_VERSION),
            "AWS_REGION": "us-east-1",
            "PYTHONPATH": target["path"],
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    figures = bench_line(proc, f"packaged cold start of {name}")
    if figures["outcomes"] != target["expect"]:
        raise RuntimeError(
            f"packaged cold start of {name}: outcomes {figures['outcomes']}, "
            f"expected {target['expect']}"
        )
    if counting:
        compiled = compiled_paths(proc.stdout)
        figures["compiled_from_package"] = sum(p.startswith(target["packaged"]) for p in compiled)
    return figures


def run() -> Result:
    with tempfile.TemporaryDirectory(prefix="babyshield-package-") as tmp:
        chosen = lay_out(Path(tmp))
        compiled = {
            name: run_once(name, target, counting=True)["compiled_from_package"]
            for name, target in chosen.items()
        }
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
        layers = lay_out_layers(Path(tmp))
        client_samples: dict[str, list[dict[str, Any]]] = {name: [] for name in layers}
        for _ in range(RUNS):
            for name, target in chosen.items():
                samples[name].append(run_once(name, target))
            for variant, site in layers.items():
                client_samples[variant].append(clients_once(variant, site))
    clients = {
        variant: {
            "import_ms": statistics.median(s["import_s"] for s in found) * 1000,
            "clients_ms": statistics.median(s["clients_s"] for s in found) * 1000,
            "services": found[0]["services"],
            "runs": len(found),
        }
        for variant, found in client_samples.items()
    }
    medians = {
        name: {**summarise(found), "modules_compiled_at_start": compiled[name]}
        for name, found in samples.items()
    }
    result = Result(name="package")
    for package in FUNCTIONS:
        shipped, bare = medians[f"{package}:bytecode"], medians[f"{package}:sources"]
        result.ratios[f"{package}_bytecode_vs_sources"] = shipped["total_ms"] / bare["total_ms"]
    result.ratios["api_clients_shipped_vs_all_services"] = (
        clients["shipped"]["clients_ms"] / clients["all_services"]["clients_ms"]
    )
    result.targets["every packaged module loads from shipped bytecode"] = all(
        medians[f"{package}:bytecode"]["modules_compiled_at_start"] == 0 for package in FUNCTIONS
    )
    result.figures["targets"] = medians
    result.figures["botocore_clients"] = clients
    result.figures["runtime_python"] = assets.LAMBDA_PYTHON_VERSION
    result.notes += [
        f"median of {RUNS} fresh processes per target, interleaved rounds, "
        f"Python {assets.LAMBDA_PYTHON_VERSION} ({assets.lambda_python()})",
        "packages built by cdk/assets.py for this machine's platform and unpacked with "
        "the deployment zip's dates; bytecode writing off, as in Lambda's read-only /var/task",
        "sources: the same packages without bytecode, as Lambda sees timestamp-checked "
        "bytecode under the zip's 1980 dates",
        "botocore_clients: Secrets Manager and DynamoDB clients created from the layer as "
        "shipped (the functions' services only) and from one with every service's model",
    ]
    return result


if __name__ == "__main__":
    res = run()
    res.write()
    res.print_table()
