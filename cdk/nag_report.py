"""Reading CDK's validation report: findings per rule pack.

cdk-nag v3 reports through CDK policy validation (`validation-report.json` in
the cloud assembly). A pack with no finding leaves no entry, so a missing pack
counts zero. Every pack is enforced: AwsSolutions, NIST 800-53 rev 5 and
CloudFormation's own validation; `make synth` prints each pack's count.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_FILE = "validation-report.json"
AWS_SOLUTIONS = "AwsSolutions"
NIST_800_53_R5 = "NIST.800.53.R5"
ENFORCED_PACKS = (AWS_SOLUTIONS, NIST_800_53_R5, "CloudFormation Validate")


@dataclass(frozen=True)
class Finding:
    pack: str
    rule: str
    severity: str
    path: str
    description: str


@dataclass(frozen=True)
class ValidationSummary:
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def count(self, pack: str) -> int:
        return sum(1 for finding in self.findings if finding.pack == pack)

    def of(self, pack: str) -> list[Finding]:
        return [finding for finding in self.findings if finding.pack == pack]

    @property
    def enforced(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.pack in ENFORCED_PACKS]

    def by_rule(self, pack: str) -> Counter[str]:
        return Counter(finding.rule for finding in self.of(pack))


def read_summary(outdir: Path) -> ValidationSummary:
    """Findings in `outdir`'s validation report; none when no report was written."""
    path = outdir / REPORT_FILE
    if not path.is_file():
        return ValidationSummary()
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    findings = [
        Finding(
            pack=str(plugin.get("pluginName")),
            rule=str(violation.get("ruleName")),
            severity=str(violation.get("severity")),
            path=str(construct.get("constructPath")),
            description=str(violation.get("description", "")).splitlines()[0][:160],
        )
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
    return ValidationSummary(tuple(findings))


def format_summary(summary: ValidationSummary) -> str:
    lines = [
        f"cdk-nag {AWS_SOLUTIONS}: {summary.count(AWS_SOLUTIONS)} findings (enforced)",
        f"cdk-nag {NIST_800_53_R5}: {summary.count(NIST_800_53_R5)} findings (enforced)",
    ]
    for rule, count in sorted(summary.by_rule(NIST_800_53_R5).items()):
        lines.append(f"  {count:3d}  {rule}")
    return "\n".join(lines)
