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
import os
import re
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
    # `scan --baseline` otherwise runs only the detectors (and entropy limits) the
    # baseline's header lists: a baseline written with `--disable-plugin`, or by an
    # older detect-secrets, would switch detectors off for every later scan.
    "--force-use-all-plugins",
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


def _run(
    command: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Tools are fixed argv lists from this module, never a shell string.
    return subprocess.run(  # noqa: S603
        list(command),
        cwd=cwd,
        env=env,
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


# --- a scanner's own config files in the tree ------------------------------------

# Bandit obeys a `.bandit` found anywhere under its targets, cfn-lint a `.cfnlintrc`
# and checkov a `.checkov.yaml` in the directory it runs in: one such file turns a
# rule off for the whole tree, far from the code it excuses and without a reason.
# The gates run each scanner so that it reads none of them (an empty `--ini` and
# `--config-file`, checkov from a scratch directory), and fail on finding one, so
# its author learns it does nothing and suppresses the one line instead
# (docs/SECURITY.md, "Suppressing a false positive").
CFN_LINT_CONFIG_FILES = (".cfnlintrc", ".cfnlintrc.yaml", ".cfnlintrc.yml")
CHECKOV_CONFIG_FILES = (".checkov.yaml", ".checkov.yml")


def scanner_config_findings(root: Path, relatives: Iterable[str], tool: str) -> list[Finding]:
    return [
        Finding(
            rule="scanner-config-file",
            severity="HIGH",
            path=relative,
            line=0,
            message=f"{tool} config file in the tree: the gate ignores it; remove it and "
            "suppress the one finding next to its code, with the reason",
        )
        for relative in relatives
        if (root / relative).is_file()
    ]


def _bandit_config_files(root: Path, targets: Iterable[str]) -> list[str]:
    return sorted(
        path.relative_to(root).as_posix()
        for target in targets
        for path in (root / target).rglob(".bandit")
    )


# --- Bandit ----------------------------------------------------------------------


def bandit_gate(context: ScanContext) -> GateResult:
    targets = [name for name in BANDIT_TARGETS if (context.root / name).is_dir()]
    if not targets:
        return GateResult("bandit", "bandit", Verdict.FAIL, note="none of functions/ cdk/ ops/")
    with tempfile.TemporaryDirectory() as scratch:
        # An explicit --ini stops Bandit's search of its targets for a `.bandit`.
        no_options = Path(scratch) / "bandit.ini"
        no_options.write_text("[bandit]\n", encoding="utf-8")
        command = [*_python_tool("bandit"), "--ini", str(no_options)]
        command += ["-r", *targets, "-f", "json", "-q"]
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
    findings += scanner_config_findings(
        context.root, _bandit_config_files(context.root, targets), "Bandit"
    )
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


REQUIREMENT_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class LockPin:
    """One requirement of a lock file, its environment marker removed."""

    name: str  # canonical
    version: str  # normalized; "" for a requirement that pins none (a URL)
    line: int
    requirement: str  # the requirement and its options (`--hash=...`), one line


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each requirements-file line, comments removed and
    backslash continuations joined, as pip reads them."""
    joined: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        # pip's rule: a comment starts at a `#` that begins the line or follows whitespace.
        content = REQUIREMENT_COMMENT.sub("", raw).strip()
        if not pending:
            start = number
        if content.endswith("\\"):
            pending += content[:-1] + " "
            continue
        pending = (pending + content).strip()
        if pending:
            joined.append((start, pending))
        pending = ""
    if pending.strip():  # a continuation on the last line
        joined.append((start, pending.strip()))
    return joined


def read_lock_pins(text: str, source: str) -> tuple[list[str], list[LockPin]]:
    """The global option lines and the requirements of a requirements-format lock.

    The locks are universal (`uv pip compile --universal`): a pin may carry a marker
    for another interpreter or platform (the Lambda layer's Python 3.13, Windows).
    pip-audit evaluates markers against the Python running it and silently drops
    the pins that do not match, so the gate hands it the pins without their markers.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    options: list[str] = []
    pins: list[LockPin] = []
    for start, logical in _logical_lines(text):
        if logical.startswith("-"):
            options.append(logical)
            continue
        spec, _, rest = logical.partition(" --")
        try:
            requirement = Requirement(spec.strip())
        except InvalidRequirement as error:
            raise ValueError(f"{source}:{start}: not a requirement: {error}") from error
        requirement.marker = None
        pinned = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        try:
            version = str(Version(pinned[0])) if len(pinned) == 1 else ""
        except InvalidVersion:
            version = pinned[0]
        line = str(requirement) + (f" --{rest}" if rest else "")
        pins.append(LockPin(canonicalize_name(requirement.name), version, start, line))
    return options, pins


def audit_sets(pins: Sequence[LockPin]) -> list[list[LockPin]]:
    """The pins split so that no name appears twice in one set: pip-audit refuses a
    requirements file holding two versions of a package, and a universal lock pins
    one version per interpreter (networkx 3.6.1 below Python 3.12, 3.7 from it)."""
    sets: list[list[LockPin]] = []
    for pin in pins:
        free = next((s for s in sets if all(other.name != pin.name for other in s)), None)
        if free is None:
            free = []
            sets.append(free)
        free.append(pin)
    return sets


PIP_AUDIT_OPTIONS = (
    "--require-hashes",
    "--disable-pip",
    "--vulnerability-service",
    "osv",
    "--format",
    "json",
    "--progress-spinner",
    "off",
)


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
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    def version_of(text: str) -> str:
        try:
            return str(Version(text))
        except InvalidVersion:
            return text

    findings: list[Finding] = []
    audited = 0
    with tempfile.TemporaryDirectory() as scratch:
        for lock in locks:
            relative = lock.relative_to(context.root).as_posix()
            options, pins = read_lock_pins(lock.read_text(encoding="utf-8"), relative)
            reported: set[tuple[str, str]] = set()
            explained: set[str] = set()  # skipped by pip-audit, with its reason
            for index, pin_set in enumerate(audit_sets(pins)):
                requirements = Path(scratch) / f"{lock.stem}-{index}.txt"
                lines = [*options, *(pin.requirement for pin in pin_set)]
                requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
                process = _run(
                    [*command, "--requirement", str(requirements), *PIP_AUDIT_OPTIONS], context.root
                )
                report = _json_output(process, "pip-audit")
                dependencies = report.get("dependencies", []) if isinstance(report, dict) else []
                for dependency in dependencies:
                    skipped = dependency.get("skip_reason")
                    if skipped:
                        # Not audited (a URL requirement, a name the index lacks): a pass
                        # would vouch for a package nobody looked at.
                        explained.add(canonicalize_name(str(dependency.get("name", ""))))
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
                    name = canonicalize_name(str(dependency["name"]))
                    reported.add((name, version_of(str(dependency["version"]))))
                    for vuln in dependency.get("vulns", []):
                        fixes = ", ".join(vuln.get("fix_versions", [])) or "none yet"
                        findings.append(
                            Finding(
                                rule=str(vuln["id"]),
                                severity="UNRATED",
                                path=relative,
                                line=0,
                                message=f"{dependency['name']} {dependency['version']}: "
                                f"fixed in {fixes}",
                            )
                        )
            # A pin pip-audit left out of its report without a reason was not looked up.
            for pin in pins:
                missing = (pin.name, pin.version) not in reported
                if pin.version and missing and pin.name not in explained:
                    findings.append(
                        Finding(
                            rule="not-audited",
                            severity="UNRATED",
                            path=relative,
                            line=pin.line,
                            message=f"{pin.name} {pin.version}: pinned, missing from "
                            "pip-audit's report",
                        )
                    )
            if not reported:
                findings.append(
                    Finding(
                        rule="nothing-audited",
                        severity="UNRATED",
                        path=relative,
                        line=0,
                        message="pip-audit audited no pinned package of this lock",
                    )
                )
            audited += len(reported)
    return gate_result("pip-audit", "pip-audit", findings, note=f"{audited} pinned packages")


# --- the synthesized templates ---------------------------------------------------


def _templates(context: ScanContext, gate: str, tool: str) -> list[Path] | GateResult:
    templates = sorted((context.root / CDK_OUT).glob("*.template.json"))
    if templates:
        return templates
    if context.synth_exit_code:
        return GateResult(
            gate,
            tool,
            Verdict.FAIL,
            note=f"make synth failed (exit {context.synth_exit_code}); nothing to check",
        )
    return GateResult(gate, tool, Verdict.FAIL, note=f"no template in {CDK_OUT}/ — run make synth")


def template_gate(
    scan: Callable[[ScanContext], GateResult],
) -> Callable[[ScanContext], GateResult]:
    """A gate on what `make synth` wrote, which fails whenever that synth failed.

    A cdk-nag finding fails the synth after CDK has written the templates and its
    validation report, so a failed synth still leaves output to scan: the gate
    reports its findings (the rule that failed the synth among them) instead of
    nothing. The output is this synth's own: `make synth` starts by removing
    cdk.out, and `make security` removes it before the synth's prerequisites run.
    """

    def run(context: ScanContext) -> GateResult:
        result = scan(context)
        if context.synth_exit_code and not result.note.startswith("make synth failed"):
            result.verdict = Verdict.FAIL
            result.note = f"make synth failed (exit {context.synth_exit_code}); {result.note}"
        return result

    return run


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
    with tempfile.TemporaryDirectory() as scratch:
        # An explicit --config-file replaces both ~/.cfnlintrc and ./.cfnlintrc.
        no_config = Path(scratch) / "cfnlintrc.yaml"
        no_config.write_text("{}\n", encoding="utf-8")
        command = [*_venv_script("cfn-lint"), "--config-file", str(no_config), "--format", "json"]
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
    findings += scanner_config_findings(context.root, CFN_LINT_CONFIG_FILES, "cfn-lint")
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
    command = [str(checkov.absolute()), "--framework", "cloudformation", "--output", "json"]
    # No guideline download, no platform calls: the gate must behave the same offline.
    command += ["--quiet", "--skip-download", "--compact"]
    for path in templates:
        command += ["--file", str(path.absolute())]
    with tempfile.TemporaryDirectory() as scratch:
        # checkov reads .checkov.yaml from its working directory and from $HOME (an
        # explicit --config-file adds to those, it does not replace them): it runs
        # in an empty directory that is its home too.
        environment = {**os.environ, "HOME": scratch}
        report = _json_output(_run(command, Path(scratch), environment), "checkov")
    # One framework gives an object, several a list; an empty scan gives a bare summary.
    listed = report if isinstance(report, list) else [report]
    entries: list[dict[str, Any]] = [entry for entry in listed if isinstance(entry, dict)]
    findings = [
        Finding(
            rule=str(check["check_id"]),
            severity=str(check.get("severity") or "UNRATED").upper(),
            path=_checkov_path(check, context.root),
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
    findings += scanner_config_findings(context.root, CHECKOV_CONFIG_FILES, "checkov")
    skipped = sum(int(summary.get("skipped", 0)) for summary in summaries)
    return gate_result(
        "checkov", "checkov", findings, note=f"{skipped} skipped with a comment; unrated fail"
    )


def _checkov_path(check: dict[str, Any], root: Path) -> str:
    """The template's path in the tree (checkov's `file_path` is relative to its cwd)."""
    absolute = check.get("file_abs_path")
    if absolute:
        try:
            return Path(str(absolute)).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return str(absolute)
    return str(check.get("file_path", "")).lstrip("/")


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
    "cfn-lint": template_gate(cfn_lint_gate),
    "checkov": template_gate(checkov_gate),
    "cdk-nag-aws-solutions": template_gate(cdk_nag_gate("cdk-nag-aws-solutions", "AwsSolutions")),
    "cdk-nag-nist-800-53-r5": template_gate(
        cdk_nag_gate("cdk-nag-nist-800-53-r5", "NIST.800.53.R5")
    ),
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
