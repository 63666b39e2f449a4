"""The API's models are built when a route first uses them, not at import.

A cold start imports every route module but serves one route; building every
model eagerly cost about 7 ms of its import (functions/api/models.py).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from functions.api.admin.keys import NewKeyRequest
from functions.api.models import ApiModel

API_DIR = Path(__file__).resolve().parents[3] / "functions" / "api"

# A fresh interpreter: in this test process other tests have built the models already.
CHILD = r"""
import json, sys
from functions.api.handler import lambda_handler
from functions.api.models import ApiModel
from ops.apigw import LocalLambdaContext, rest_event

def models():
    found, pending = [], list(ApiModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        found.append(model)
    return found

def built():
    return sorted(model.__name__ for model in models() if model.__pydantic_complete__)

after_import = built()
health = lambda_handler(rest_event("GET", "/health"), LocalLambdaContext())["statusCode"]
print(json.dumps({
    "models": sorted(model.__name__ for model in models()),
    "after_import": after_import,
    "health": health,
    "after_health": built(),
}))
"""


def _model_classes(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            found.append((node.name, bases))
    return found


def test_every_api_model_derives_from_the_deferring_base():
    # Given every class defined under functions/api
    eager = []
    for path in sorted(API_DIR.rglob("*.py")):
        if path.name == "models.py" and path.parent == API_DIR:
            continue
        for name, bases in _model_classes(path):
            # Then none subclasses pydantic's BaseModel directly
            if any(base in ("BaseModel", "pydantic.BaseModel") for base in bases):
                eager.append(f"{path.relative_to(API_DIR)}::{name}")
    assert not eager, f"derive these from functions.api.models.ApiModel: {eager}"


def test_a_cold_start_that_serves_health_builds_no_model():
    # When a fresh process imports the API and answers /health
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=API_DIR.parents[1],
        env={**os.environ, "AWS_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    # Then the route models are the deferring kind, importing built none of them,
    # and /health (no validation) built none either
    assert {"Health", "RecallPage", "NewKeyRequest", "LoginRequest"} <= set(seen["models"])
    assert seen["after_import"] == []
    assert seen["health"] == 200
    assert seen["after_health"] == []


def test_a_deferred_model_still_validates_with_its_own_config():
    # Given a request model whose subclass config forbids unknown fields
    assert NewKeyRequest.model_config.get("defer_build") is True
    assert issubclass(NewKeyRequest, ApiModel)

    # When it validates input with an unknown field and a bound broken
    with pytest.raises(ValidationError) as raised:
        NewKeyRequest.model_validate(
            {"owner_id": "2f6ad1b6-7c43-4a6e-9d7e-4b0f3c9f2a10", "scopes": [], "surprise": 1}
        )

    # Then both the merged config (extra="forbid") and the field bounds hold
    kinds = {error["type"] for error in raised.value.errors()}
    assert {"extra_forbidden", "too_short"} <= kinds
