"""cfn-lint on the synthesized template: no errors, and only known CDK warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.infrastructure.conftest import Synthesized

# W3005: CDK writes DependsOn next to a GetAtt/Ref (redundant, harmless).
# W3045: CDK's log-delivery bucket sets the legacy AccessControl property.
KNOWN_WARNINGS = {"W3005", "W3045"}


def test_template_has_no_cfn_lint_errors(synthesized: Synthesized):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"

    result = subprocess.run(
        [str(cfn_lint), "--format", "json", str(synthesized.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    matches = json.loads(result.stdout or "[]")
    errors = [m for m in matches if m["Level"] == "Error"]
    assert errors == []
    unknown = {m["Rule"]["Id"] for m in matches} - KNOWN_WARNINGS
    assert unknown == set(), [m["Message"] for m in matches if m["Rule"]["Id"] in unknown]
    # Exit codes are bit flags: 2 = errors. A crash (1) must not pass as "clean".
    assert result.returncode & 3 == 0, result.stderr
