"""functions/__init__.py: pydantic's plugin search is off in every function, unless
an operator has said otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A fresh interpreter: this test process imported pydantic long ago.
CHILD = r"""
import json, os
from pydantic.plugin import _loader
handler = __import__(os.environ["HANDLER"], fromlist=["lambda_handler"]).lambda_handler
from functions.shared.settings import get_settings
get_settings()  # a model validated, so pydantic has asked for its plugins
print(json.dumps({
    "setting": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
    "entry_points_read": _loader._plugins is not None,
}))
"""


def _run(handler: str, **extra: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env={**env, "AWS_REGION": "us-east-1", "HANDLER": handler, **extra},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    "handler",
    ["functions.api.handler", "functions.rotate_jwt.handler", "functions.waf_responder.handler"],
)
def test_a_function_never_reads_every_distribution_for_pydantic_plugins(handler):
    # When a fresh process imports a handler and validates its settings
    seen = _run(handler)

    # Then the plugin search was switched off before pydantic's first model build
    assert seen == {"setting": "__all__", "entry_points_read": False}


def test_an_operators_own_plugin_setting_is_kept():
    # Given an operator who disables one named plugin only (so others load)
    seen = _run("functions.api.handler", PYDANTIC_DISABLE_PLUGINS="some-plugin")

    # Then the package leaves the setting as it was, and pydantic searched for plugins
    assert seen == {"setting": "some-plugin", "entry_points_read": True}
