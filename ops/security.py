"""`babyshield security`: the scanning gates a developer runs before pushing.

The same gates CI runs (see `.github/workflows/security-scan.yml`), limited to
what works on one machine with the tools the project installs itself: Bandit,
detect-secrets against the committed baseline, pip-audit against the lock files
(when its vulnerability service answers), and the synthesized templates through
cfn-lint, checkov and both cdk-nag packs.

Every gate ends with a verdict printed in one table. A gate never passes by not
running: a missing tool or a missing template is a FAIL that says how to get it,
and an unreachable vulnerability service is a SKIP, never a PASS. The process
exits non-zero when any gate fails (and, with `--strict`, when any is skipped).

This module only needs the standard library at import time, so CI can call
`python -m ops.security security-sarif ...` on a bare runner.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ops.console import print_table

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Highest first; UNRATED is a finding whose tool gives no severity (pip-audit,
# checkov without a platform key). It fails a gate: nothing shows it is below
# the threshold.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNRATED")
FAILING_SEVERITIES = frozenset({"CRITICAL", "HIGH", "MEDIUM", "UNRATED"})

BASELINE_FILE = ".secrets.baseline"
# What detect-secrets never reads: tool caches, virtualenvs, build output, the
# baseline itself (it holds hashes) and the hash-pinned lock files (every
# `--hash=sha256:` line looks like a high-entropy string).
SECRET_SCAN_EXCLUDES = (
    r"(^|/)(\.venv|\.git|\.tools|cdk\.out|node_modules|\.node|\.mypy_cache|\.ruff_cache"
    r"|\.pytest_cache|\.hypothesis|\.babyshield|__pycache__|[^/]*\.egg-info)/",
    r"^\.secrets\.baseline$",
    r"^requirements/[^/]*\.lock$",
)

SECRET_SCAN_OPTIONS = (
    # Without it detect-secrets sends candidates to their issuers (AWS STS,
    # Slack, ...) and drops those refused: the verdict would depend on the
    # network, and a deactivated key that can be switched back on would pass.
    "--no-verify",
    # This heuristic drops every secret on a line shaped `x = call(...)`, so
    # `boto3.client(..., aws_secret_access_key="...")` or `connect("postgresql://
    # user:password@...")` passed unseen. The few strings it excused are audited.
    "--disable-filter",
    "detect_secrets.filters.heuristic.is_indirect_reference",
)

BANDIT_TARGETS = ("functions", "cdk", "ops")
CDK_OUT = "cdk.out"
# The CDK issue installs checkov in its own virtualenv (its pins conflict with
# the project's); this gate only looks for it there.
CHECKOV_BIN = Path(".tools/checkov/bin/checkov")
CHECKOV_INSTALL_HINT = "make checkov"
# cdk-nag v3 reports through CDK's policy validation; v2 wrote NagReport files.
# cdk/app.py::RULE_PACKS_FILE (this module imports only the standard library).
RULE_PACKS_FILE = "rule-packs.json"
VALIDATION_REPORTS = ("validation-report.json", "policy-validation-report.json")
NAG_PACKS = {
    # plugin name in the report -> the class that registers it in cdk/
    "AwsSolutions": "AwsSolutionsChecks",
    "NIST.800.53.R5": "NIST80053R5Checks",
}
# pip-audit's OSV service; a 3-second HTTPS request decides "offline".
OSV_URL = "https://api.osv.dev/v1/query"
REACHABILITY_TIMEOUT_SECONDS = 3.0
LOCK_FILES = ("requirements/runtime.lock", "requirements/dev.lock")
TOOL_TIMEOUT_SECONDS = 900
MAX_FINDINGS_SHOWN = 20


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    path: str
    line: int
    message: str


@dataclass
class GateResult:
    gate: str
    tool: str
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    note: str = ""

    def counts(self) -> Counter[str]:
        return Counter(finding.severity for finding in self.findings)


@dataclass(frozen=True)
class ScanContext:
    root: Path
    synth_exit_code: int | None = None
    online: Callable[[], bool] = field(default_factory=lambda: osv_reachable)


class ToolMissing(Exception):
    """A scanner is not installed; the message says how to install it."""


def verdict_for(findings: Iterable[Finding]) -> Verdict:
    failing = any(finding.severity in FAILING_SEVERITIES for finding in findings)
    return Verdict.FAIL if failing else Verdict.PASS


def gate_result(gate: str, tool: str, findings: list[Finding], note: str = "") -> GateResult:
    return GateResult(gate, tool, verdict_for(findings), findings, note)


# --- running tools ---------------------------------------------------------------


def _python_tool(module: str) -> list[str]:
    if importlib.util.find_spec(module) is None:
        raise ToolMissing(f"{module} not installed — run make install")
    return [sys.executable, "-m", module]


def _venv_script(name: str) -> list[str]:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} not installed — run make install")
    return [found]


def _run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Tools are fixed argv lists from this module, never a shell string.
    return subprocess.run(  # noqa: S603
        list(command),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def _json_output(process: subprocess.CompletedProcess[str], tool: str) -> Any:
    try:
        return json.loads(process.stdout)
    except json.JSONDecodeError as error:
        tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
        raise RuntimeError(
            f"{tool} exited {process.returncode} without a JSON report: {' | '.join(tail)}"
        ) from error


def osv_reachable() -> bool:
    return service_reachable(OSV_URL)


def service_reachable(url: str, timeout: float = REACHABILITY_TIMEOUT_SECONDS) -> bool:
    """True when `url` answers at all within `timeout` (any HTTP status counts).

    Runs in a thread with a deadline, because a DNS lookup ignores socket
    timeouts and can hang far longer than the budget.
    """
    answered: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - fixed https URL
        try:
            # The URL is a module constant with an https scheme, never caller input.
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310  # nosec B310
                answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


# --- Bandit ----------------------------------------------------------------------


def bandit_gate(context: ScanContext) -> GateResult:
    targets = [name for name in BANDIT_TARGETS if (context.root / name).is_dir()]
    if not targets:
        return GateResult("bandit", "bandit", Verdict.FAIL, note="none of functions/ cdk/ ops/")
    command = [*_python_tool("bandit"), "-r", *targets, "-f", "json", "-q"]
    report = _json_output(_run(command, context.root), "bandit")
    findings = [
        Finding(
            rule=f"{item['test_id']} {item['test_name']}",
            severity=str(item["issue_severity"]).upper(),
            path=str(item["filename"]),
            line=int(item["line_number"]),
            message=f"{item['issue_text']} (confidence {str(item['issue_confidence']).lower()})",
        )
        for item in report.get("results", [])
    ]
    findings += [
        Finding("parse-error", "HIGH", str(error["filename"]), 0, str(error["reason"]))
        for error in report.get("errors", [])
    ]
    return gate_result("bandit", "bandit", findings, note=f"{', '.join(targets)}; fails at medium")


# --- detect-secrets --------------------------------------------------------------


def _secret_scan(*options: str) -> list[str]:
    command = [*_python_tool("detect_secrets"), "scan", "--all-files", *SECRET_SCAN_OPTIONS]
    for pattern in SECRET_SCAN_EXCLUDES:
        command += ["--exclude-files", pattern]
    return [*command, *options]


def secret_scan_command(baseline: Path) -> list[str]:
    return _secret_scan("--baseline", str(baseline))


def rescan_baseline(root: Path, baseline: Path) -> dict[str, Any]:
    """The tree scanned with the baseline's settings; audit marks carry over."""
    process = _run(secret_scan_command(baseline), root)
    if process.returncode != 0:
        raise RuntimeError(f"detect-secrets scan failed: {process.stderr.strip()[-300:]}")
    rescanned: dict[str, Any] = json.loads(baseline.read_text(encoding="utf-8"))
    return rescanned


def detect_secrets_gate(context: ScanContext) -> GateResult:
    committed = context.root / BASELINE_FILE
    if not committed.is_file():
        return GateResult(
            "detect-secrets",
            "detect-secrets",
            Verdict.FAIL,
            note=f"no {BASELINE_FILE} — run babyshield security --update-baseline",
        )
    known = _baseline_keys(json.loads(committed.read_text(encoding="utf-8")))
    with tempfile.TemporaryDirectory() as scratch:
        # `scan --baseline` rewrites the file it is given; the committed one stays as is.
        working = Path(scratch) / BASELINE_FILE
        shutil.copyfile(committed, working)
        rescanned = rescan_baseline(context.root, working)
    findings = []
    for filename, entries in sorted(rescanned.get("results", {}).items()):
        for entry in entries:
            if entry.get("is_secret") is False:
                continue  # audited as a false positive in the committed baseline
            is_new = (filename, entry["hashed_secret"], entry["type"]) not in known
            status = "new, not in the baseline" if is_new else "in the baseline, not audited"
            if entry.get("is_secret") is True:
                status = "audited as a real secret"
            findings.append(
                Finding(
                    rule=str(entry["type"]),
                    severity="CRITICAL" if entry.get("is_secret") is True else "HIGH",
                    path=filename,
                    line=int(entry.get("line_number", 0)),
                    message=f"potential secret ({status})",
                )
            )
    audited = sum(
        1
        for entries in rescanned.get("results", {}).values()
        for entry in entries
        if entry.get("is_secret") is False
    )
    return gate_result(
        "detect-secrets", "detect-secrets", findings, note=f"{audited} audited false positives"
    )


def _baseline_keys(baseline: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (filename, entry["hashed_secret"], entry["type"])
        for filename, entries in baseline.get("results", {}).items()
        for entry in entries
    }


def update_baseline(root: Path) -> list[tuple[str, int, str]]:
    """Rescan into the committed baseline, keeping audit marks; list what needs an audit."""
    baseline = root / BASELINE_FILE
    if not baseline.exists():
        process = _run(_secret_scan(), root)
        if process.returncode != 0:
            raise RuntimeError(f"detect-secrets scan failed: {process.stderr.strip()[-300:]}")
        baseline.write_text(process.stdout, encoding="utf-8")
    rescanned = rescan_baseline(root, baseline)
    return [
        (filename, int(entry.get("line_number", 0)), str(entry["type"]))
        for filename, entries in sorted(rescanned.get("results", {}).items())
        for entry in entries
        if entry.get("is_secret") is not False
    ]


# --- pip-audit -------------------------------------------------------------------


def pip_audit_gate(context: ScanContext) -> GateResult:
    locks = [context.root / name for name in LOCK_FILES if (context.root / name).is_file()]
    if not locks:
        return GateResult("pip-audit", "pip-audit", Verdict.FAIL, note="no lock file to audit")
    command = _python_tool("pip_audit")
    if not context.online():
        return GateResult(
            "pip-audit",
            "pip-audit",
            Verdict.SKIP,
            note="skipped: offline (OSV vulnerability service unreachable); not audited",
        )
    findings: list[Finding] = []
    audited = 0
    for lock in locks:
        relative = lock.relative_to(context.root).as_posix()
        process = _run(
            [
                *command,
                "--requirement",
                relative,
                "--require-hashes",
                "--disable-pip",
                "--vulnerability-service",
                "osv",
                "--format",
                "json",
                "--progress-spinner",
                "off",
            ],
            context.root,
        )
        report = _json_output(process, "pip-audit")
        dependencies = report.get("dependencies", []) if isinstance(report, dict) else []
        for dependency in dependencies:
            skipped = dependency.get("skip_reason")
            if skipped:
                # Not audited (a URL requirement, a name the index lacks): a pass would
                # vouch for a package nobody looked at.
                findings.append(
                    Finding(
                        rule="not-audited",
                        severity="UNRATED",
                        path=relative,
                        line=0,
                        message=f"{dependency.get('name', '?')}: not audited: {skipped}",
                    )
                )
                continue
            audited += 1
            for vuln in dependency.get("vulns", []):
                fixes = ", ".join(vuln.get("fix_versions", [])) or "none yet"
                findings.append(
                    Finding(
                        rule=str(vuln["id"]),
                        severity="UNRATED",
                        path=relative,
                        line=0,
                        message=f"{dependency['name']} {dependency['version']}: fixed in {fixes}",
                    )
                )
    return gate_result("pip-audit", "pip-audit", findings, note=f"{audited} pinned packages")


# --- the synthesized templates ---------------------------------------------------


def _templates(context: ScanContext, gate: str, tool: str) -> list[Path] | GateResult:
    if context.synth_exit_code:
        return GateResult(
            gate,
            tool,
            Verdict.FAIL,
            note=f"make synth failed (exit {context.synth_exit_code}); nothing to check",
        )
    templates = sorted((context.root / CDK_OUT).glob("*.template.json"))
    if not templates:
        return GateResult(
            gate, tool, Verdict.FAIL, note=f"no template in {CDK_OUT}/ — run make synth"
        )
    return templates


CFN_LINT_LEVELS = {"Error": "HIGH", "Warning": "MEDIUM", "Informational": "LOW"}
# Warnings CDK itself produces on every app, counted as LOW (visible, not failing).
# tests/infrastructure/test_cfn_lint.py accepts the same two.
CFN_LINT_KNOWN_CDK_WARNINGS = {
    "W3005": "CDK writes DependsOn next to a GetAtt/Ref to the same resource",
    "W3045": "CDK's log-delivery bucket sets the legacy AccessControl property",
}


def cfn_lint_gate(context: ScanContext) -> GateResult:
    templates = _templates(context, "cfn-lint", "cfn-lint")
    if isinstance(templates, GateResult):
        return templates
    command = [*_venv_script("cfn-lint"), "--format", "json"]
    command += [path.relative_to(context.root).as_posix() for path in templates]
    report = _json_output(_run(command, context.root), "cfn-lint")
    findings = [
        Finding(
            rule=str(match["Rule"]["Id"]),
            severity="LOW"
            if match["Rule"]["Id"] in CFN_LINT_KNOWN_CDK_WARNINGS and match["Level"] == "Warning"
            else CFN_LINT_LEVELS.get(str(match["Level"]), "UNRATED"),
            path=str(match["Filename"]),
            line=int(match.get("Location", {}).get("Start", {}).get("LineNumber", 0)),
            message=str(match["Message"]),
        )
        for match in report
    ]
    return gate_result("cfn-lint", "cfn-lint", findings, note=f"{len(templates)} templates")


def checkov_gate(context: ScanContext) -> GateResult:
    templates = _templates(context, "checkov", "checkov")
    if isinstance(templates, GateResult):
        return templates
    checkov = context.root / CHECKOV_BIN
    if not checkov.exists():
        return GateResult(
            "checkov",
            "checkov",
            Verdict.FAIL,
            note=f"skipped: checkov not installed — run {CHECKOV_INSTALL_HINT}",
        )
    command = [str(checkov), "--framework", "cloudformation", "--output", "json", "--quiet"]
    # No guideline download, no platform calls: the gate must behave the same offline.
    command += ["--skip-download", "--compact"]
    for path in templates:
        command += ["--file", path.relative_to(context.root).as_posix()]
    report = _json_output(_run(command, context.root), "checkov")
    # One framework gives an object, several a list; an empty scan gives a bare summary.
    listed = report if isinstance(report, list) else [report]
    entries: list[dict[str, Any]] = [entry for entry in listed if isinstance(entry, dict)]
    findings = [
        Finding(
            rule=str(check["check_id"]),
            severity=str(check.get("severity") or "UNRATED").upper(),
            path=str(check.get("file_path", "")).lstrip("/"),
            line=int((check.get("file_line_range") or [0])[0]),
            message=f"{check.get('resource', '?')}: {check.get('check_name', '')}",
        )
        for entry in entries
        for check in entry.get("results", {}).get("failed_checks", [])
    ]
    summaries = [entry.get("summary", entry) for entry in entries]
    unparsed = sum(int(summary.get("parsing_errors", 0)) for summary in summaries)
    if unparsed:
        # A template checkov could not read was not checked at all.
        findings.append(Finding("parsing-error", "HIGH", CDK_OUT, 0, f"{unparsed} unparsed"))
    skipped = sum(int(summary.get("skipped", 0)) for summary in summaries)
    return gate_result(
        "checkov", "checkov", findings, note=f"{skipped} skipped with a comment; unrated fail"
    )


NAG_SEVERITIES = {
    "fatal": "CRITICAL",
    "error": "HIGH",
    "warning": "MEDIUM",
    "info": "LOW",
}


@dataclass
class NagPackReport:
    violations: list[Finding] = field(default_factory=list)
    acknowledged: int = 0
    seen: bool = False


def read_nag_reports(cdk_out: Path) -> dict[str, NagPackReport] | None:
    """Findings per cdk-nag pack from cdk.out, or None when no report was written."""
    packs: dict[str, NagPackReport] = {name: NagPackReport() for name in NAG_PACKS}
    found = False
    for name in VALIDATION_REPORTS:
        path = cdk_out / name
        if path.is_file():
            found = True
            _read_validation_report(json.loads(path.read_text(encoding="utf-8")), packs)
            break
    for path in sorted(cdk_out.glob("*-NagReport.csv")):
        found = True
        _read_legacy_nag_csv(path, packs)
    for path in sorted(cdk_out.glob("*.metadata.json")):
        _read_acknowledgements(json.loads(path.read_text(encoding="utf-8")), packs)
    return packs if found else None


ACKNOWLEDGED_RULES = "aws:cdk:acknowledged-rules"


def _read_acknowledgements(metadata: dict[str, Any], packs: dict[str, NagPackReport]) -> None:
    """cdk-nag v3 drops acknowledged findings from the report; the stack metadata keeps them."""
    for construct_path, entries in metadata.items():
        for entry in entries:
            if entry.get("type") != ACKNOWLEDGED_RULES:
                continue
            for key, reason in (entry.get("data") or {}).items():
                rule = str(key).split("::", 1)[-1]
                pack_name = next((name for name in packs if rule.startswith(f"{name}-")), None)
                if pack_name is None:
                    continue
                if str(reason or "").strip():
                    packs[pack_name].acknowledged += 1
                else:
                    packs[pack_name].violations.append(
                        Finding(rule, "MEDIUM", construct_path, 0, "acknowledged without a reason")
                    )


def _read_validation_report(report: dict[str, Any], packs: dict[str, NagPackReport]) -> None:
    for plugin in report.get("pluginReports", []):
        name = plugin.get("pluginName") or plugin.get("summary", {}).get("pluginName")
        if name not in packs:
            continue
        pack = packs[name]
        pack.seen = True
        for violation in plugin.get("violations", []):
            severity = NAG_SEVERITIES.get(str(violation.get("severity", "error")), "UNRATED")
            for target in _violating_resources(violation):
                pack.violations.append(
                    Finding(
                        rule=str(violation.get("ruleName", "?")),
                        severity=severity,
                        path=target,
                        line=0,
                        message=str(violation.get("description", "")).strip()[:200],
                    )
                )


def _violating_resources(violation: dict[str, Any]) -> list[str]:
    targets = []
    for item in violation.get("violatingConstructs") or violation.get("violatingResources") or []:
        resource = item.get("cloudFormationResource") or {}
        logical_id = resource.get("logicalId") or item.get("resourceLogicalId")
        targets.append(str(item.get("constructPath") or logical_id or "?"))
    return targets or ["?"]


def _read_legacy_nag_csv(path: Path, packs: dict[str, NagPackReport]) -> None:
    pack_name = next((name for name in packs if path.name.startswith(f"{name}-")), None)
    if pack_name is None:
        return
    pack = packs[pack_name]
    pack.seen = True
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            compliance = row.get("Compliance", "")
            if compliance == "Suppressed":
                pack.acknowledged += 1
            elif compliance == "Non-Compliant":
                level = row.get("Rule Level", "Error").lower()
                pack.violations.append(
                    Finding(
                        rule=row.get("Rule ID", "?"),
                        severity=NAG_SEVERITIES.get(level, "UNRATED"),
                        path=row.get("Resource ID", "?"),
                        line=0,
                        message=row.get("Rule Info", ""),
                    )
                )


def packs_the_synth_ran(cdk_out: Path) -> list[str] | None:
    """The cdk-nag packs the synth recorded running (cdk/app.py::record_rule_packs);
    None when it recorded nothing (a synth from before the record, or none)."""
    try:
        document = json.loads((cdk_out / RULE_PACKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    packs = document.get("packs") if isinstance(document, dict) else None
    if not isinstance(packs, list):
        return None
    return [str(pack) for pack in packs]


def cdk_nag_gate(gate: str, pack_name: str) -> Callable[[ScanContext], GateResult]:
    tool = f"cdk-nag ({pack_name})"

    def run(context: ScanContext) -> GateResult:
        templates = _templates(context, gate, tool)
        if isinstance(templates, GateResult):
            return templates
        packs = read_nag_reports(context.root / CDK_OUT)
        if packs is None:
            return GateResult(
                gate,
                tool,
                Verdict.FAIL,
                note=f"no validation report in {CDK_OUT}/: cdk-nag did not run in synth",
            )
        pack = packs[pack_name]
        # A clean pack leaves no entry in CDK's report: the synth's own record of
        # the packs it ran is the evidence (a pack switched off by context, or a
        # registration commented out, is not in it).
        ran = packs_the_synth_ran(context.root / CDK_OUT)
        if ran is None:
            return GateResult(
                gate,
                tool,
                Verdict.FAIL,
                note=f"no {CDK_OUT}/{RULE_PACKS_FILE}: the synth did not say which packs ran "
                "(run make synth)",
            )
        if pack_name not in ran:
            return GateResult(
                gate,
                tool,
                Verdict.FAIL,
                note=f"{NAG_PACKS[pack_name]} did not run in the synth (babyshield:nist off?)",
            )
        return gate_result(
            gate, tool, pack.violations, note=f"{pack.acknowledged} acknowledged with reasons"
        )

    return run


# --- the gate list and the report ------------------------------------------------

GATES: dict[str, Callable[[ScanContext], GateResult]] = {
    "bandit": bandit_gate,
    "detect-secrets": detect_secrets_gate,
    "pip-audit": pip_audit_gate,
    "cfn-lint": cfn_lint_gate,
    "checkov": checkov_gate,
    "cdk-nag-aws-solutions": cdk_nag_gate("cdk-nag-aws-solutions", "AwsSolutions"),
    "cdk-nag-nist-800-53-r5": cdk_nag_gate("cdk-nag-nist-800-53-r5", "NIST.800.53.R5"),
}


def run_gates(context: ScanContext, names: Sequence[str] | None = None) -> list[GateResult]:
    results = []
    for name in names or list(GATES):
        try:
            results.append(GATES[name](context))
        except ToolMissing as missing:
            results.append(GateResult(name, name, Verdict.FAIL, note=f"skipped: {missing}"))
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as error:
            results.append(GateResult(name, name, Verdict.FAIL, note=f"error: {error}"))
    return results


def print_report(results: Sequence[GateResult], *, strict: bool = False) -> int:
    for result in results:
        # Below-threshold findings only count in the table; listing them buries the real ones.
        shown = [f for f in result.findings if f.severity in FAILING_SEVERITIES]
        if not shown:
            continue
        print(f"\n{result.gate}: {len(shown)} at or above medium, {len(result.findings)} in all")
        ranked = sorted(shown, key=lambda f: (SEVERITIES.index(f.severity), f.path, f.line))
        for finding in ranked[:MAX_FINDINGS_SHOWN]:
            location = f"{finding.path}:{finding.line}" if finding.line else finding.path
            print(f"  {finding.severity:<8} {finding.rule}  {location}  {finding.message}")
        if len(ranked) > MAX_FINDINGS_SHOWN:
            print(f"  ... and {len(ranked) - MAX_FINDINGS_SHOWN} more")
    print()
    rows = []
    for result in results:
        counts = result.counts()
        rows.append(
            [
                result.gate,
                result.tool,
                *(counts.get(s, 0) for s in SEVERITIES),
                result.verdict,
                result.note,
            ]
        )
    headers = ["gate", "tool", *(s.lower() for s in SEVERITIES), "verdict", "note"]
    print_table(headers, rows)
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    skipped = [r for r in results if r.verdict is Verdict.SKIP]
    passed = len(results) - len(failed) - len(skipped)
    blocking = failed + (skipped if strict else [])
    outcome = "FAILED" if blocking else "passed"
    print(
        f"\nsecurity: {outcome}: {passed} passed, {len(failed)} failed, {len(skipped)} skipped"
        + (" (skips fail under --strict)" if strict and skipped else "")
    )
    return 1 if blocking else 0


# --- SARIF, for GitHub code scanning ---------------------------------------------

SARIF_LEVELS = {
    "CRITICAL": "error",
    "HIGH": "error",
    "MEDIUM": "warning",
    "UNRATED": "warning",
    "LOW": "note",
}


def to_sarif(tool: str, findings: Sequence[Finding]) -> dict[str, Any]:
    rules = sorted({finding.rule for finding in findings})
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": tool,
                        "rules": [{"id": rule, "name": rule} for rule in rules],
                    }
                },
                "results": [
                    {
                        "ruleId": finding.rule,
                        "level": SARIF_LEVELS[finding.severity],
                        "message": {"text": f"[{finding.severity}] {finding.message}"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": finding.path or "."},
                                    "region": {"startLine": max(finding.line, 1)},
                                }
                            }
                        ],
                    }
                    for finding in findings
                ],
            }
        ],
    }


def write_sarif(directory: Path, results: Sequence[GateResult]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        path = directory / f"{result.gate}.sarif"
        path.write_text(json.dumps(to_sarif(result.tool, result.findings), indent=2))
        written.append(path)
    return written


class MalformedScanOutput(ValueError):
    """A line of the scanner's output is not the JSON it writes: the scan was cut short."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line} is not JSON ({problem})")
        self.line = line


def trufflehog_findings(lines: Iterable[str]) -> list[Finding]:
    """TruffleHog's `--json` output (one object a line) as findings; verified ones are CRITICAL."""
    findings = []
    for number, line in enumerate(lines, start=1):
        if not line.strip().startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedScanOutput(number, exc.msg) from exc
        if "DetectorName" not in item:
            continue  # log lines share the stream
        source = item.get("SourceMetadata", {}).get("Data", {})
        location: dict[str, Any] = next(iter(source.values()), {}) if source else {}
        verified = bool(item.get("Verified"))
        findings.append(
            Finding(
                rule=str(item["DetectorName"]),
                severity="CRITICAL" if verified else "MEDIUM",
                path=str(location.get("file", "")),
                line=int(location.get("line", 0) or 0),
                message=("verified" if verified else "unverified")
                + f" {item['DetectorName']} secret"
                + (f" in commit {location['commit'][:12]}" if location.get("commit") else ""),
            )
        )
    return findings


# --- the command -----------------------------------------------------------------


def _run_command(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    if args.update_baseline:
        pending = update_baseline(root)
        print(f"updated {BASELINE_FILE}: {len(pending)} entries need an audit")
        for filename, line, kind in pending:
            print(f"  {filename}:{line}  {kind}")
        if pending:
            print(f"  next: detect-secrets audit {BASELINE_FILE} (mark each one, with care)")
        return 0
    unknown = [name for name in args.gate if name not in GATES]
    if unknown:
        print(f"error: unknown gate {', '.join(unknown)}; gates: {', '.join(GATES)}")
        return 2
    context = ScanContext(root=root, synth_exit_code=args.synth_exit_code)
    results = run_gates(context, args.gate or None)
    if args.sarif_dir:
        write_sarif(Path(args.sarif_dir), results)
    return print_report(results, strict=args.strict)


def _sarif_command(args: argparse.Namespace) -> int:
    source = Path(args.input)
    if not source.is_file():
        # The scan step died before writing: that is a failure, not "no secrets".
        print(f"error: {source} not found: the TruffleHog scan did not run", file=sys.stderr)
        return 1
    try:
        findings = trufflehog_findings(source.read_text(encoding="utf-8").splitlines())
    except MalformedScanOutput as exc:
        # Half a finding is no "no secrets": the scan stopped while writing.
        print(
            f"error: {source}: {exc}: the TruffleHog scan did not finish; run it again",
            file=sys.stderr,
        )
        return 1
    Path(args.output).write_text(json.dumps(to_sarif("TruffleHog", findings), indent=2))
    verified = sum(1 for finding in findings if finding.severity == "CRITICAL")
    print(f"trufflehog: {len(findings)} findings, {verified} verified -> {args.output}")
    return 1 if verified else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "security",
        help="run the security scanning gates (Bandit, detect-secrets, pip-audit, "
        "cfn-lint, checkov, cdk-nag) and print their verdicts",
        description="Run the offline scanning gates over this checkout and print one "
        "verdict per gate (`make security`; docs/SECURITY.md). Exit 1 when a gate fails.",
    )
    parser.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only this gate (repeatable): {', '.join(GATES)}",
    )
    parser.add_argument("--root", default=str(PROJECT_ROOT), help="the tree to scan")
    parser.add_argument(
        "--synth-exit-code",
        type=int,
        default=None,
        help="exit code of the `make synth` just run; non-zero fails the template gates",
    )
    parser.add_argument("--strict", action="store_true", help="a skipped gate fails too (CI)")
    parser.add_argument("--sarif-dir", help="also write one SARIF file per gate here")
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help=f"rescan into {BASELINE_FILE}, keeping audit marks, and list what needs an audit",
    )
    parser.set_defaults(func=_run_command)

    sarif = subparsers.add_parser(
        "security-sarif",
        help="convert TruffleHog JSON lines to SARIF (exit 1 if verified)",
        description="Convert a TruffleHog --json scan into SARIF for code scanning. Exit 1 "
        "when it found a verified secret, or when its output is missing or cut short.",
    )
    sarif.add_argument("input", help="TruffleHog --json output")
    sarif.add_argument("output", help="SARIF file to write")
    sarif.set_defaults(func=_sarif_command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.security")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
