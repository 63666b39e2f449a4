"""Lambda code assets: contents, bytecode, content addressing and cache pruning."""

from __future__ import annotations

import ast
import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdk import assets


@pytest.fixture
def source_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """functions/ with shared code and two neighbouring packages, and a build cache."""
    functions = tmp_path / "functions"
    for package in ("shared", "alpha", "beta"):
        (functions / package).mkdir(parents=True)
        (functions / package / "__init__.py").write_text(f'"""{package}"""\n')
        (functions / package / "__pycache__").mkdir()
        (functions / package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (functions / "__init__.py").write_text("")
    monkeypatch.setattr(assets, "FUNCTIONS_DIR", functions)
    monkeypatch.setattr(assets, "BUILD_ROOT", tmp_path / "build")
    return functions


def test_code_dir_holds_shared_code_and_its_own_package_only(source_tree: Path):
    directory, _ = assets.function_code_dir("alpha")

    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.py"))

    assert files == [
        "functions/__init__.py",
        "functions/alpha/__init__.py",
        "functions/shared/__init__.py",
    ]


def test_code_dir_ships_the_runtimes_bytecode_not_this_machines(source_tree: Path):
    directory, _ = assets.function_code_dir("alpha")
    tag = f"cpython-{assets.LAMBDA_PYTHON_VERSION.replace('.', '')}"

    compiled = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.pyc"))

    assert compiled == [
        f"functions/__pycache__/__init__.{tag}.pyc",
        f"functions/alpha/__pycache__/__init__.{tag}.pyc",
        f"functions/shared/__pycache__/__init__.{tag}.pyc",
    ]
    assert assets.stale_bytecode(directory) == []


def test_bytecode_records_the_deployed_path(source_tree: Path):
    directory, _ = assets.function_code_dir("alpha")
    script = (
        "import marshal, sys; data = open(sys.argv[1], 'rb').read(); "
        "print(marshal.loads(data[16:]).co_filename)"
    )
    (pyc,) = (directory / "functions" / "alpha" / "__pycache__").iterdir()

    recorded = subprocess.run(
        [assets.lambda_python(), "-c", script, str(pyc)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert recorded == "/var/task/functions/alpha/__init__.py"


def test_stale_bytecode_names_a_module_whose_source_changed(source_tree: Path):
    directory, _ = assets.function_code_dir("alpha")
    (directory / "functions" / "alpha" / "__init__.py").write_text('"""edited in place"""\n')
    (directory / "functions" / "shared" / "late.py").write_text("")

    assert assets.stale_bytecode(directory) == [
        "functions/alpha/__init__.py: bytecode does not match the source",
        "functions/shared/late.py: no bytecode",
    ]


def test_a_module_that_does_not_compile_fails_the_build_and_leaves_nothing(source_tree: Path):
    (source_tree / "alpha" / "broken.py").write_text("def f(:\n")

    with pytest.raises(RuntimeError, match="compiling the bytecode"):
        assets.function_code_dir("alpha")

    assert not list((assets.BUILD_ROOT / "functions").iterdir())


def test_lambda_python_is_the_runtimes_version():
    found = subprocess.run(
        [assets.lambda_python(), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert found == assets.LAMBDA_PYTHON_VERSION


def test_a_chosen_interpreter_of_another_version_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(assets.LAMBDA_PYTHON_ENV, sys.executable)
    assets.lambda_python.cache_clear()
    try:
        if sys.version_info[:2] == tuple(map(int, assets.LAMBDA_PYTHON_VERSION.split("."))):
            assert assets.lambda_python() == sys.executable
        else:
            with pytest.raises(RuntimeError, match="the Lambda runtime is Python"):
                assets.lambda_python()
    finally:
        assets.lambda_python.cache_clear()


def test_editing_shared_code_gives_a_new_asset(source_tree: Path):
    first, first_hash = assets.function_code_dir("alpha")
    again, again_hash = assets.function_code_dir("alpha")

    (source_tree / "shared" / "__init__.py").write_text('"""changed"""\n')
    changed, changed_hash = assets.function_code_dir("alpha")

    assert (again, again_hash) == (first, first_hash)
    assert changed_hash != first_hash
    assert (changed / "functions" / "shared" / "__init__.py").read_text() == '"""changed"""\n'


def test_editing_a_neighbour_does_not_change_the_asset(source_tree: Path):
    _, before = assets.function_code_dir("alpha")

    (source_tree / "beta" / "__init__.py").write_text('"""edited"""\n')
    _, after = assets.function_code_dir("alpha")

    assert after == before


def test_day_old_builds_of_the_same_function_are_pruned(source_tree: Path):
    old, _ = assets.function_code_dir("alpha")
    neighbour, _ = assets.function_code_dir("beta")
    day_ago = time.time() - assets.STALE_BUILD_SECONDS - 60
    for directory in (old, neighbour):
        os.utime(directory, (day_ago, day_ago))

    (source_tree / "alpha" / "__init__.py").write_text('"""v2"""\n')
    current, _ = assets.function_code_dir("alpha")

    assert current.is_dir()
    assert not old.exists()
    assert neighbour.is_dir()


def test_unknown_package_is_refused(source_tree: Path):
    with pytest.raises(FileNotFoundError, match="no such function"):
        assets.function_code_dir("gamma")


def _one_package_lock(tmp_path: Path, comment: str = "") -> Path:
    """A lock file holding only `six`, copied with its hashes from the runtime lock."""
    lines = assets.RUNTIME_LOCK.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("six=="))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.strip().startswith("--hash="):
            break
        block.append(line)
    lock = tmp_path / f"six{len(comment)}.lock"
    lock.write_text(f"# {comment}\n" + "\n".join(block) + "\n")
    return lock


def test_layer_ships_the_runtimes_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(assets, "BUILD_ROOT", tmp_path / "build")

    layer, _ = assets.dependency_layer_dir(_one_package_lock(tmp_path))

    assert (layer / "python" / "six.py").is_file()
    assert assets.stale_bytecode(layer) == []


@pytest.mark.skipif(
    assets.HOST_PLATFORMS == assets.LAMBDA_PLATFORMS, reason="this machine is the Lambda's kind"
)
def test_a_layer_prunes_its_superseded_builds_but_not_the_other_architectures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(assets, "BUILD_ROOT", tmp_path / "build")
    lock = _one_package_lock(tmp_path)
    lambda_layer, _ = assets.dependency_layer_dir(lock)
    host_layer, _ = assets.dependency_layer_dir(lock, platforms=assets.HOST_PLATFORMS)
    day_ago = time.time() - assets.STALE_BUILD_SECONDS - 60
    for directory in (lambda_layer, host_layer):
        os.utime(directory, (day_ago, day_ago))

    # A new lock file supersedes the Lambda layer built from the old one.
    newer, _ = assets.dependency_layer_dir(_one_package_lock(tmp_path, "relocked"))

    assert newer.is_dir()
    assert not lambda_layer.exists()
    assert host_layer.is_dir()


def _client_services(root: Path) -> dict[str, list[str]]:
    """Service name -> where: every `...client("name", ...)` call under `root`."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            callee = node.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            first = node.args[0]
            service = first.value if isinstance(first, ast.Constant) else None
            if name.endswith("client") and isinstance(service, str):
                found.setdefault(service, []).append(f"{path.name}:{node.lineno}")
    return found


def test_the_layer_keeps_the_model_of_every_service_a_function_calls():
    # Given every AWS client the functions create
    called = _client_services(assets.FUNCTIONS_DIR)
    assert {"secretsmanager", "dynamodb", "wafv2", "sts"} <= called.keys()

    # Then the layer keeps each one's botocore model
    dropped = {
        name: where for name, where in called.items() if name not in assets.BOTOCORE_SERVICES
    }
    assert not dropped, f"add to BOTOCORE_SERVICES in cdk/assets.py: {dropped}"


def test_pruning_keeps_the_listed_services_and_botocores_shared_files(tmp_path: Path):
    # Given a layer's botocore data with three services and the shared files
    data = tmp_path / "botocore" / "data"
    for service in ("dynamodb", "ec2", "s3"):
        (data / service / "2012-08-10").mkdir(parents=True)
        model = gzip.compress(json_bytes({"metadata": {"endpointPrefix": service}}))
        (data / service / "2012-08-10" / "service-2.json.gz").write_bytes(model)
    (data / "endpoints.json").write_text("{}")

    # When it is pruned to one of them
    assets.prune_botocore_data(tmp_path, keep=("dynamodb",))

    # Then that service and the shared file stay, the others are gone
    assert sorted(p.name for p in data.iterdir()) == ["dynamodb", "endpoints.json"]
    assert (data / "dynamodb" / "2012-08-10" / "service-2.json.gz").is_file()


def test_pruning_refuses_a_kept_service_botocore_does_not_ship(tmp_path: Path):
    # Given botocore data without the service a function is said to call
    (tmp_path / "botocore" / "data" / "dynamodb").mkdir(parents=True)
    (tmp_path / "botocore" / "data" / "s3").mkdir()

    # Then pruning fails, naming it, and removes nothing
    with pytest.raises(RuntimeError, match="no model for wafv3"):
        assets.prune_botocore_data(tmp_path, keep=("dynamodb", "wafv3"))
    assert (tmp_path / "botocore" / "data" / "s3").is_dir()


def test_a_layer_without_botocore_is_left_as_it_is(tmp_path: Path):
    (tmp_path / "six.py").write_text("")

    assets.prune_botocore_data(tmp_path)

    assert [p.name for p in tmp_path.iterdir()] == ["six.py"]


def test_slimming_keeps_the_kept_services_endpoints_and_drops_only_documentation(
    tmp_path: Path,
):
    # Given botocore data: two partitions listing three services, and a model whose
    # shapes carry documentation, one of them a member named "documentation"
    data = tmp_path / "botocore" / "data"
    model_dir = data / "cloudwatch" / "2010-08-01"
    model_dir.mkdir(parents=True)
    model = {
        "metadata": {"endpointPrefix": "monitoring", "documentation": "skip"},
        "documentation": "The service.",
        "operations": {"Put": {"input": {"shape": "In"}, "documentation": "<p>x</p>"}},
        "shapes": {
            "In": {
                "type": "structure",
                "members": {
                    "documentation": {"shape": "Text", "documentation": "a member"},
                    "Name": {"shape": "Text", "documentationUrl": "https://x"},
                },
            },
            "Text": {"type": "string", "max": 3},
        },
    }
    (model_dir / "service-2.json.gz").write_bytes(gzip.compress(json_bytes(model)))
    partition = {"partition": "aws", "regions": {"r": {}}, "services": {}}
    endpoints = {
        "partitions": [
            {**partition, "services": {"monitoring": {"e": 1}, "ec2": {}, "s3": {}}},
            {**partition, "partition": "aws-cn", "services": {"ec2": {}}},
        ],
        "version": 3,
    }
    (data / "endpoints.json").write_bytes(json_bytes(endpoints))

    # When it is pruned to that service
    assets.prune_botocore_data(tmp_path, keep=("cloudwatch",))

    # Then the endpoints list that service alone, in every partition kept whole
    slim = assets._load_json(data / "endpoints.json")
    assert [p["services"] for p in slim["partitions"]] == [{"monitoring": {"e": 1}}, {}]
    assert slim["partitions"][0]["regions"] == {"r": {}}
    assert slim["version"] == 3
    # And the model lost its documentation strings, not the member so named
    assert assets._load_json(model_dir / "service-2.json.gz") == {
        "metadata": {"endpointPrefix": "monitoring"},
        "operations": {"Put": {"input": {"shape": "In"}}},
        "shapes": {
            "In": {
                "type": "structure",
                "members": {"documentation": {"shape": "Text"}, "Name": {"shape": "Text"}},
            },
            "Text": {"type": "string", "max": 3},
        },
    }


def json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value).encode()


# What a client built from some botocore resolves and sends: for every kept service,
# its endpoint in regions of four partitions (and FIPS), its signing name, every
# shape's structure, and one real call to the moto server.
CLIENT_FINGERPRINT = r"""
import json, sys, botocore.session
from botocore.config import Config
services, endpoint = json.loads(sys.argv[1]), sys.argv[2]
session = botocore.session.get_session()
found = {"from": botocore.__file__, "services": {}}
for name in services:
    seen = {}
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"):
        for fips in (False, True):
            try:
                client = session.create_client(
                    name, region_name=region, aws_access_key_id="a",
                    aws_secret_access_key="b", config=Config(use_fips_endpoint=fips),
                )
                seen[f"{region} fips={fips}"] = [
                    client.meta.endpoint_url, client.meta.region_name,
                    client.meta.service_model.signing_name,
                ]
            except Exception as error:
                seen[f"{region} fips={fips}"] = type(error).__name__
    model = session.get_service_model(name)
    shapes = {}
    for shape_name in model.shape_names:
        shape = model.shape_for(shape_name)
        members = getattr(shape, "members", {})
        shapes[shape_name] = [
            shape.type_name, shape.serialization, shape.metadata,
            {member: [m.name, m.serialization] for member, m in members.items()},
        ]
    operations = {
        op: [model.operation_model(op).http, model.operation_model(op).input_shape is None]
        for op in model.operation_names
    }
    found["services"][name] = {"endpoints": seen, "shapes": shapes, "operations": operations}
local = dict(region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b",
             endpoint_url=endpoint)
found["calls"] = [
    sorted(session.create_client("secretsmanager", **local).list_secrets()),
    sorted(session.create_client("dynamodb", **local).list_tables()),
]
print("RESULT " + json.dumps(found, default=str, sort_keys=True))
"""


def _fingerprint(python_path: str | None, endpoint: str) -> dict[str, object]:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if python_path:
        env["PYTHONPATH"] = python_path
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT_FINGERPRINT,
            json.dumps(sorted(assets.BOTOCORE_SERVICES)),
            endpoint,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    found: dict[str, object] = json.loads(line.removeprefix("RESULT "))
    return found


def test_the_slimmed_botocore_resolves_and_sends_what_the_full_one_does(
    tmp_path: Path, moto_endpoint: str
):
    # Given this machine's botocore, copied and pruned as the layer prunes it
    import botocore

    source = Path(botocore.__file__).parent
    copy = tmp_path / "site"
    shutil_ignore = shutil.ignore_patterns("__pycache__", "data")
    shutil.copytree(source, copy / "botocore", ignore=shutil_ignore)
    (copy / "botocore" / "data").mkdir()
    for item in (source / "data").iterdir():
        if item.is_file():
            shutil.copy2(item, copy / "botocore" / "data" / item.name)
        elif item.name in assets.BOTOCORE_SERVICES:
            shutil.copytree(item, copy / "botocore" / "data" / item.name)
    assets.prune_botocore_data(copy)
    assert (copy / "botocore" / "data" / "endpoints.json").stat().st_size < 200_000

    # When clients of every kept service are built from each
    full = _fingerprint(None, moto_endpoint)
    slim = _fingerprint(str(copy), moto_endpoint)

    # Then the slim one was used, and every endpoint, shape and answer is the same
    assert str(slim.pop("from")).startswith(str(copy))
    assert str(full.pop("from")).startswith(str(source))
    assert slim == full
