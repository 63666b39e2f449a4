"""The Node.js that runs the CDK library is the project's supported one."""

from __future__ import annotations

import shutil
import subprocess

from tests.infrastructure.conftest import NODE_BIN

# Node.js releases the CDK library supports without its end-of-life warning.
SUPPORTED_MAJORS = {22, 24}


def test_node_on_path_is_the_projects_supported_release():
    # Given the session's PATH (set before aws_cdk started its Node.js process)
    node = shutil.which("node")

    # When its version is asked
    version = subprocess.run(
        [str(node), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    # Then it is the project's own Node.js, a release the CDK library supports
    assert node == str(NODE_BIN / "node")
    assert int(version.lstrip("v").split(".")[0]) in SUPPORTED_MAJORS, version
