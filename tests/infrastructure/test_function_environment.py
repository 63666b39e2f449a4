"""What every function's environment holds for its cold start."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from functions.shared import names
from tests.infrastructure.conftest import Synthesized

# Run with the variable set: the first model is built without looking up a plugin.
NO_PLUGIN_LOOKUP = r"""
import importlib.metadata

def refuse(*args, **kwargs):
    raise AssertionError("pydantic looked up plugins")

importlib.metadata.entry_points = refuse
import pydantic.plugin._loader as loader
loader.entry_points = refuse

class Model(pydantic.BaseModel):
    name: str

print(Model(name="x").name)
"""


def _functions(synthesized: Synthesized) -> list[dict[str, Any]]:
    return [
        f["Properties"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if str(f["Properties"].get("FunctionName", "")).startswith(names.PREFIX)
    ]


def test_every_function_builds_pydantic_models_without_a_plugin_lookup(
    synthesized: Synthesized,
):
    # Given the synthesized functions
    functions = _functions(synthesized)
    assert len(functions) >= 6

    # Then each turns pydantic's plugin lookup off
    for function in functions:
        variables = function["Environment"]["Variables"]
        assert variables.get("PYDANTIC_DISABLE_PLUGINS") == "__all__", function["FunctionName"]

    # And the pinned pydantic honours it: no entry-point scan on the first model
    result = subprocess.run(
        [sys.executable, "-c", "import pydantic\n" + NO_PLUGIN_LOOKUP],
        env={"PYDANTIC_DISABLE_PLUGINS": "__all__"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "x"
    # (Without it, the same child fails: the lookup happens.)
    unset = subprocess.run(
        [sys.executable, "-c", "import pydantic\n" + NO_PLUGIN_LOOKUP],
        env={},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "pydantic looked up plugins" in unset.stderr
