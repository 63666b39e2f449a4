"""checkov (framework cloudformation) on the synthesized assembly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.conftest import Synthesized


@pytest.fixture(scope="module")
def checkov_report(synthesized: Synthesized, checkov_bin: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(checkov_bin),
            "--directory",
            str(synthesized.outdir),
            "--framework",
            "cloudformation",
            # Asset directories hold code and dependency data, not templates.
            "--skip-path",
            r"asset\.",
            # No network here: the guideline download would only add links.
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, "one framework scanned"
    single: dict[str, Any] = reports[0]
    return single


def test_no_failed_checks(checkov_report: dict[str, Any]):
    failed = [
        f"{check['check_id']} {check['resource']}"
        for check in checkov_report["results"]["failed_checks"]
    ]
    assert failed == []


def test_checkov_scanned_the_template(checkov_report: dict[str, Any]):
    # A scan that found no template would also report zero failures.
    assert checkov_report["summary"]["resource_count"] > 100
    assert checkov_report["summary"]["passed"] > 200


def test_every_skip_carries_a_reason(checkov_report: dict[str, Any]):
    skipped = checkov_report["results"]["skipped_checks"]

    assert skipped, "the template records its checkov exceptions"
    for check in skipped:
        comment = check["check_result"].get("suppress_comment") or ""
        assert len(comment) >= 20, f"{check['check_id']} {check['resource']}"
