"""The gates behind `make security` fail on a planted secret and a planted Bandit issue.

Each test copies a small tree (the real `.secrets.baseline`, a real module
holding one of its audited entries, clean first-party modules) into a temporary
directory and runs the gate runner on it, so the repository itself never holds
the secret.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import string
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ops import security
from ops.cli import main
from ops.security import GATES, Finding, ScanContext, Verdict, run_gates

REPO = Path(__file__).resolve().parents[2]
# The SecretId of its rotation event (a secret's name, not a value) is a Secret
# Keyword match audited as a false positive in the committed baseline.
AUDITED_MODULE = "tests/unit/rotation/test_protocol_gate.py"
CLEAN_MODULE = '''"""A clean module: parameterised subprocess, safe YAML."""

import yaml


def parse(text: str) -> object:
    return yaml.safe_load(text)
'''
MINIMAL_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "babyshield-oncall"}},
        # DependsOn beside a Ref to the same resource: cfn-lint W3005, which CDK writes.
        "Email": {
            "Type": "AWS::SNS::Subscription",
            "DependsOn": "Topic",
            "Properties": {
                "Protocol": "email",
                "Endpoint": "oncall@example.com",
                "TopicArn": {"Ref": "Topic"},
            },
        },
    },
}


def minimal_project(root: Path, *relatives: str) -> Path:
    """A copy of the baseline, the audited module and `relatives` under `root`, with
    one clean module of our own: a tree the scanners read as they read the project."""
    for relative in (".secrets.baseline", *relatives, AUDITED_MODULE):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / relative, target)
    module = root / "functions" / "shared" / "parsing.py"
    module.parent.mkdir(parents=True)
    module.write_text(CLEAN_MODULE, encoding="utf-8")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A minimal copy of the project: what Bandit and detect-secrets read."""
    return minimal_project(tmp_path, "ops/__init__.py", "ops/console.py", "ops/security.py")


def offline() -> bool:
    return False


def fake_aws_key_pair() -> tuple[str, str]:
    # Built at run time so no key-shaped literal exists in the repository.
    rng = random.Random(9)
    key_id = "AKIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16))
    secret = "".join(rng.choices(string.ascii_letters + string.digits + "/+", k=40))
    return key_id, secret


def verdicts(results: list[security.GateResult]) -> dict[str, Verdict]:
    return {result.gate: result.verdict for result in results}


def test_clean_copy_passes_bandit_and_detect_secrets(tree: Path):
    # Given a tree whose only secret-looking string is an audited false positive
    # When the two source gates run
    results = run_gates(ScanContext(root=tree), ["bandit", "detect-secrets"])

    # Then both pass, and the string was matched as an audited false positive
    assert verdicts(results) == {"bandit": Verdict.PASS, "detect-secrets": Verdict.PASS}
    assert results[1].note.startswith("1 audited")


def test_planted_aws_key_fails_detect_secrets(tree: Path):
    # Given an AWS key pair committed by mistake
    key_id, secret = fake_aws_key_pair()
    leak = tree / "functions" / "shared" / "leak.py"
    leak.write_text(
        f'AWS_ACCESS_KEY_ID = "{key_id}"\naws_secret_access_key = "{secret}"\n', encoding="utf-8"
    )

    # When detect-secrets runs against the committed baseline
    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    # Then the gate fails and names the file and the kind of secret
    assert result.verdict is Verdict.FAIL
    leaked = [finding for finding in result.findings if finding.path == "functions/shared/leak.py"]
    assert {finding.rule for finding in leaked} >= {"AWS Access Key"}
    assert all("new, not in the baseline" in finding.message for finding in leaked)


def test_unaudited_baseline_entry_still_fails(tree: Path):
    # Given a baseline whose entry for the audited module lost its audit mark
    baseline_path = tree / ".secrets.baseline"
    baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
    for entry in baseline["results"][AUDITED_MODULE]:
        entry.pop("is_secret", None)
    baseline_path.write_text(json.dumps(baseline), encoding="utf-8")

    # When detect-secrets runs
    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    # Then a known but unaudited entry is not waved through
    assert result.verdict is Verdict.FAIL
    assert [f.message for f in result.findings] == [
        "potential secret (in the baseline, not audited)"
    ]


def test_missing_baseline_fails_detect_secrets(tree: Path):
    (tree / ".secrets.baseline").unlink()

    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    assert result.verdict is Verdict.FAIL
    assert "--update-baseline" in result.note


def test_planted_yaml_load_fails_bandit_at_medium(tree: Path):
    # Given code that deserialises untrusted YAML (Bandit B506, medium severity)
    (tree / "ops" / "loader.py").write_text(
        "import yaml\n\n\ndef load(text):\n    return yaml.load(text)\n", encoding="utf-8"
    )

    # When Bandit runs
    [result] = run_gates(ScanContext(root=tree), ["bandit"])

    # Then the medium threshold fails the gate on that line
    assert result.verdict is Verdict.FAIL
    assert any(
        f.rule.startswith("B506") and f.path == "ops/loader.py" and f.severity == "MEDIUM"
        for f in result.findings
    )


def test_low_severity_finding_is_counted_but_does_not_fail(tree: Path):
    # Given a clean tree, then a low-severity Bandit finding (importing subprocess, B404)
    lows_before = run_gates(ScanContext(root=tree), ["bandit"])[0].counts()["LOW"]
    (tree / "functions" / "shared" / "spawn.py").write_text("import subprocess\n")

    # When Bandit runs
    [result] = run_gates(ScanContext(root=tree), ["bandit"])

    # Then it still passes, and the low finding shows in the counts
    assert result.verdict is Verdict.PASS
    assert result.counts()["LOW"] == lows_before + 1
    assert any(f.rule.startswith("B404") and f.path.endswith("spawn.py") for f in result.findings)


def test_command_prints_every_verdict_and_exits_nonzero_on_failure(
    tree: Path, capsys: pytest.CaptureFixture[str]
):
    # Given a planted Bandit issue
    (tree / "ops" / "shell.py").write_text(
        "import subprocess\n\n\ndef run(command):\n"
        "    return subprocess.run(command, shell=True, check=False)\n"
    )

    # When `babyshield security` runs both source gates
    code = main(["security", "--root", str(tree), "--gate", "bandit", "--gate", "detect-secrets"])

    # Then it exits 1, lists the finding and prints one row per gate with its verdict
    output = capsys.readouterr().out
    assert code == 1
    assert "B602" in output
    rows = {line.split()[0]: line.split() for line in output.splitlines() if line[:1].isalpha()}
    assert "FAIL" in rows["bandit"]
    assert "PASS" in rows["detect-secrets"]
    assert "security: FAILED" in output


def test_command_exits_zero_on_a_clean_tree(tree: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["security", "--root", str(tree), "--gate", "bandit"])

    assert code == 0
    assert "security: passed: 1 passed, 0 failed, 0 skipped" in capsys.readouterr().out


def test_pip_audit_offline_is_a_skip_never_a_pass(tree: Path):
    (tree / "requirements").mkdir()
    shutil.copyfile(REPO / "requirements" / "runtime.lock", tree / "requirements/runtime.lock")

    [result] = run_gates(ScanContext(root=tree, online=offline), ["pip-audit"])

    assert result.verdict is Verdict.SKIP
    assert result.note.startswith("skipped: offline")


def test_strict_turns_a_skip_into_a_failure(
    tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # Given no route to the vulnerability service
    monkeypatch.setattr(security, "osv_reachable", offline)
    (tree / "requirements").mkdir()
    shutil.copyfile(REPO / "requirements" / "runtime.lock", tree / "requirements/runtime.lock")
    argv = ["security", "--root", str(tree), "--gate", "pip-audit"]

    # Then a developer's run passes with a SKIP line, and CI's --strict run fails
    assert main(argv) == 0
    assert "skipped: offline" in capsys.readouterr().out
    assert main([*argv, "--strict"]) == 1


def test_pip_audit_without_a_lock_file_fails(tree: Path):
    [result] = run_gates(ScanContext(root=tree, online=offline), ["pip-audit"])

    assert result.verdict is Verdict.FAIL


@pytest.mark.parametrize("gate", ["cfn-lint", "checkov", "cdk-nag-aws-solutions"])
def test_template_gates_fail_without_a_synthesized_template(tree: Path, gate: str):
    [result] = run_gates(ScanContext(root=tree), [gate])

    assert result.verdict is Verdict.FAIL
    assert "run make synth" in result.note


@pytest.mark.parametrize("gate", ["cfn-lint", "checkov", "cdk-nag-nist-800-53-r5"])
def test_template_gates_fail_when_synth_failed_before_writing_a_template(tree: Path, gate: str):
    [result] = run_gates(ScanContext(root=tree, synth_exit_code=2), [gate])

    assert result.verdict is Verdict.FAIL
    assert result.note == "make synth failed (exit 2); nothing to check"


@pytest.mark.parametrize("gate", ["cfn-lint", "checkov", "cdk-nag-nist-800-53-r5"])
def test_a_failed_synth_fails_every_template_gate_even_when_its_output_scans_clean(
    tree: Path, gate: str
):
    # Given a synth that failed after writing a template cfn-lint finds nothing in
    write_template(tree)

    [result] = run_gates(ScanContext(root=tree, synth_exit_code=2), [gate])

    assert result.verdict is Verdict.FAIL
    assert result.note.startswith("make synth failed (exit 2); ")


def test_cfn_lint_reports_the_findings_of_the_template_a_failed_synth_wrote(tree: Path):
    """A cdk-nag finding fails the synth after CDK wrote the template: the other template
    gates still scan it, so one run shows everything wrong with it, not only the first."""
    broken = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicNam": "x"}}}}
    write_template(tree, broken)

    [result] = run_gates(ScanContext(root=tree, synth_exit_code=2), ["cfn-lint"])

    assert result.verdict is Verdict.FAIL
    assert any(f.severity == "HIGH" and f.rule.startswith("E") for f in result.findings)


def test_cdk_nag_gate_names_the_rule_that_failed_the_synth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Every cdk-nag finding fails `make synth` (cdk/app.py::main exits 1, make exits 2),
    and CDK writes the whole assembly and its validation report before it raises.
    `make security` and the checkov CI job pass that exit code on; the cdk-nag gates
    then read the report, list the rule that failed the synth, and put it in the SARIF
    CI uploads to code scanning (docs/SECURITY.md: every job uploads its findings, even
    when it fails), instead of an empty "nothing to check"."""
    node_bin = REPO / ".node" / "node_modules" / "node" / "bin"
    if node_bin.is_dir():
        monkeypatch.setenv("PATH", f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    from aws_cdk import App, Stack
    from aws_cdk import aws_iam as iam

    from cdk.app import add_rule_packs, record_rule_packs
    from cdk.nag_report import read_summary

    # Given an app wired as cdk/app.py wires it, with an IAM wildcard planted in a role
    root = tmp_path / "tree"
    outdir = root / "cdk.out"
    app = App(outdir=str(outdir))
    stack = Stack(app, "BabyShield")
    role = iam.Role(stack, "Fn", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["*"], resources=["*"]))
    record_rule_packs(outdir, add_rule_packs(app, nist=True))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    assert (outdir / "BabyShield.template.json").is_file()
    assert any(f.rule.startswith("AwsSolutions-IAM5") for f in read_summary(outdir).enforced)
    synth_exit = 2  # cdk/app.py::main returns 1 on these findings; make reports 2

    # When `make security` runs the gate with that synth's exit code (CI passes --sarif-dir)
    sarif = tmp_path / "sarif"
    code = main(
        [
            "security",
            "--root",
            str(root),
            "--synth-exit-code",
            str(synth_exit),
            "--gate",
            "cdk-nag-aws-solutions",
            "--sarif-dir",
            str(sarif),
        ]
    )

    # Then it fails, naming the wildcard, and code scanning gets the finding
    output = capsys.readouterr().out
    assert code == 1
    assert "AwsSolutions-IAM5" in output, output
    results = json.loads((sarif / "cdk-nag-aws-solutions.sarif").read_text())["runs"][0]
    assert any(r["ruleId"].startswith("AwsSolutions-IAM5") for r in results["results"])


def test_make_security_removes_the_old_synth_output_before_the_synth():
    """The template gates read cdk.out even when the synth failed. `make synth` removes
    cdk.out only once its prerequisites (install, Node.js, the Lambda build) succeeded;
    `make security` removes it first, so a synth failing earlier leaves nothing stale."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nsecurity:", 1)[1].split("\n\n", 1)[0]

    assert recipe.index("rm -rf cdk.out") < recipe.index("synth")


def write_template(root: Path, template: Mapping[str, object] | None = None) -> Path:
    path = root / "cdk.out" / "BabyShield.template.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(template or MINIMAL_TEMPLATE, indent=1), encoding="utf-8")
    return path


def test_cfn_lint_passes_known_cdk_warnings_and_fails_an_invalid_template(tree: Path):
    write_template(tree)
    [clean] = run_gates(ScanContext(root=tree), ["cfn-lint"])

    broken = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicNam": "x"}}}}
    write_template(tree, broken)
    [failed] = run_gates(ScanContext(root=tree), ["cfn-lint"])

    assert clean.verdict is Verdict.PASS
    assert [(f.rule, f.severity) for f in clean.findings] == [("W3005", "LOW")]
    assert failed.verdict is Verdict.FAIL
    assert any(f.severity == "HIGH" and f.rule.startswith("E") for f in failed.findings)


def test_checkov_not_installed_is_a_failing_gate_that_says_how(tree: Path):
    write_template(tree)

    [result] = run_gates(ScanContext(root=tree), ["checkov"])

    assert result.verdict is Verdict.FAIL
    assert result.note == f"skipped: checkov not installed — run {security.CHECKOV_INSTALL_HINT}"


def install_fake_checkov(root: Path, report: object) -> None:
    script = root / security.CHECKOV_BIN
    script.parent.mkdir(parents=True)
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(report)}\nEOF\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_checkov_failed_checks_fail_the_gate_even_without_a_severity(tree: Path):
    # Given checkov (OSS, so no severities) reporting one failed check
    write_template(tree)
    failed_check = {
        "check_id": "CKV_AWS_26",
        "check_name": "Ensure all data stored in the SNS topic is encrypted",
        "file_path": "/cdk.out/BabyShield.template.json",
        "file_line_range": [3, 8],
        "resource": "AWS::SNS::Topic.Topic",
        "severity": None,
    }
    install_fake_checkov(tree, {"results": {"failed_checks": [failed_check]}, "summary": {}})

    [result] = run_gates(ScanContext(root=tree), ["checkov"])

    assert result.verdict is Verdict.FAIL
    [finding] = result.findings
    assert (finding.severity, finding.path, finding.line) == (
        "UNRATED",
        "cdk.out/BabyShield.template.json",
        3,
    )


def test_checkov_with_no_failed_checks_passes(tree: Path):
    write_template(tree)
    install_fake_checkov(tree, [{"results": {"failed_checks": []}}, {"passed": 3, "failed": 0}])

    [result] = run_gates(ScanContext(root=tree), ["checkov"])

    assert result.verdict is Verdict.PASS


def test_checkov_parsing_errors_fail_the_gate(tree: Path):
    # Given a template checkov could not read, so none of its checks ran
    write_template(tree)
    install_fake_checkov(tree, {"results": {"failed_checks": []}, "summary": {"parsing_errors": 1}})

    [result] = run_gates(ScanContext(root=tree), ["checkov"])

    assert result.verdict is Verdict.FAIL
    assert [f.rule for f in result.findings] == ["parsing-error"]


def nag_violation(rule: str, severity: str, logical_id: str) -> dict[str, object]:
    return {
        "ruleName": rule,
        "description": f"{rule} description",
        "severity": severity,
        "violatingConstructs": [
            {
                "constructPath": f"BabyShield/{logical_id}",
                "cloudFormationResource": {
                    "templatePath": "BabyShield.template.json",
                    "logicalId": logical_id,
                },
            }
        ],
    }


def test_cdk_nag_findings_are_counted_per_pack(tree: Path):
    # Given CDK's validation report with AwsSolutions findings and a clean NIST pack
    write_template(tree)
    report = {
        "title": "Validation Report",
        "pluginReports": [
            {
                "pluginName": "AwsSolutions",
                "conclusion": "failure",
                "violations": [
                    nag_violation("AwsSolutions-SNS2", "error", "Topic"),
                    nag_violation("AwsSolutions-IAM4", "warning", "Role"),
                ],
            }
        ],
    }
    (tree / "cdk.out" / "validation-report.json").write_text(json.dumps(report))
    write_acknowledgements(
        tree, {"Annotation::AwsSolutions-L1": "the runtime is pinned on purpose"}
    )
    write_packs_record(tree, ["AwsSolutions", "NIST.800.53.R5"])

    # When both cdk-nag gates run
    aws, nist = run_gates(
        ScanContext(root=tree), ["cdk-nag-aws-solutions", "cdk-nag-nist-800-53-r5"]
    )

    # Then each pack has its own row: AwsSolutions fails with its counts, NIST passes
    assert aws.verdict is Verdict.FAIL
    assert (aws.counts()["HIGH"], aws.counts()["MEDIUM"]) == (1, 1)
    assert aws.note == "1 acknowledged with reasons"
    assert nist.verdict is Verdict.PASS


def write_acknowledgements(root: Path, rules: dict[str, str]) -> None:
    # Where CDK records `Validations.of(scope).acknowledge(...)`: cdk-nag v3 leaves
    # acknowledged findings out of the report itself.
    metadata = {
        "/BabyShield/Fn": [
            {"type": "aws:cdk:logicalId", "data": "Fn"},
            {"type": "aws:cdk:acknowledged-rules", "data": rules},
        ]
    }
    (root / "cdk.out" / "BabyShield.metadata.json").write_text(json.dumps(metadata))


def test_cdk_nag_acknowledgement_without_a_reason_fails(tree: Path):
    # Given a clean report, and one AwsSolutions rule acknowledged with an empty reason
    write_template(tree)
    (tree / "cdk.out" / "validation-report.json").write_text('{"pluginReports": []}')
    write_packs_record(tree, ["AwsSolutions"])
    write_acknowledgements(
        tree,
        {"Annotation::AwsSolutions-IAM4": " ", "CloudFormation-Validate::W3010": "expected"},
    )

    [result] = run_gates(ScanContext(root=tree), ["cdk-nag-aws-solutions"])

    # Then the unexplained acknowledgement is a finding; the other pack's is ignored
    assert result.verdict is Verdict.FAIL
    assert [(f.rule, f.path) for f in result.findings] == [("AwsSolutions-IAM4", "/BabyShield/Fn")]
    assert result.note == "0 acknowledged with reasons"


def write_packs_record(root: Path, packs: list[str]) -> None:
    """What cdk/app.py writes beside the assembly: the packs the synth ran."""
    from cdk.app import RULE_PACKS_FILE

    (root / "cdk.out" / RULE_PACKS_FILE).write_text(json.dumps({"packs": packs}))


def test_cdk_nag_pack_the_synth_did_not_run_fails_although_it_is_in_the_code(tree: Path):
    # Given a clean report from a synth that ran AwsSolutions only (babyshield:nist off),
    # in a tree whose code still names the NIST pack
    write_template(tree)
    (tree / "cdk.out" / "validation-report.json").write_text('{"pluginReports": []}')
    write_packs_record(tree, ["AwsSolutions"])
    (tree / "cdk").mkdir()
    (tree / "cdk" / "app.py").write_text("Validations.of(app).addPlugins(NIST80053R5Checks(app))\n")

    [aws, nist] = run_gates(
        ScanContext(root=tree), ["cdk-nag-aws-solutions", "cdk-nag-nist-800-53-r5"]
    )

    assert aws.verdict is Verdict.PASS
    assert nist.verdict is Verdict.FAIL
    assert "NIST80053R5Checks did not run in the synth" in nist.note


def test_cdk_nag_without_the_synths_record_of_its_packs_fails(tree: Path):
    write_template(tree)
    (tree / "cdk.out" / "validation-report.json").write_text('{"pluginReports": []}')

    [result] = run_gates(ScanContext(root=tree), ["cdk-nag-aws-solutions"])

    assert result.verdict is Verdict.FAIL
    assert "did not say which packs ran" in result.note


def test_the_synth_records_the_packs_it_runs(tmp_path: Path):
    from cdk.app import RULE_PACKS_FILE, build_app, default_context
    from ops.security import RULE_PACKS_FILE as GATE_READS
    from ops.security import packs_the_synth_ran

    assert GATE_READS == RULE_PACKS_FILE
    for nist, expected in ((True, ["AwsSolutions", "NIST.800.53.R5"]), (False, ["AwsSolutions"])):
        outdir = tmp_path / str(nist)
        build_app(outdir=str(outdir), context={**default_context(), "babyshield:nist": nist})
        assert packs_the_synth_ran(outdir) == expected


def test_cdk_nag_without_any_report_fails(tree: Path):
    write_template(tree)

    [result] = run_gates(ScanContext(root=tree), ["cdk-nag-aws-solutions"])

    assert result.verdict is Verdict.FAIL
    assert "cdk-nag did not run" in result.note


def test_cdk_nag_v2_report_files_are_read(tree: Path):
    write_template(tree)
    (tree / "cdk.out" / "AwsSolutions-BabyShield-NagReport.csv").write_text(
        "Rule ID,Resource ID,Compliance,Exception Reason,Rule Level,Rule Info\n"
        "AwsSolutions-S1,BabyShield/Bucket,Non-Compliant,N/A,Error,Access logs\n"
        "AwsSolutions-S2,BabyShield/Bucket,Suppressed,reason,Error,Public access\n"
        "AwsSolutions-S3,BabyShield/Bucket,Compliant,N/A,Warning,Other\n"
    )
    write_packs_record(tree, ["AwsSolutions"])

    [result] = run_gates(ScanContext(root=tree), ["cdk-nag-aws-solutions"])

    assert result.verdict is Verdict.FAIL
    assert [f.rule for f in result.findings] == ["AwsSolutions-S1"]
    assert result.note == "1 acknowledged with reasons"


def test_every_gate_is_in_the_default_run():
    assert list(GATES) == [
        "bandit",
        "detect-secrets",
        "pip-audit",
        "cfn-lint",
        "checkov",
        "cdk-nag-aws-solutions",
        "cdk-nag-nist-800-53-r5",
    ]


def test_sarif_has_one_result_per_finding_with_its_level(tmp_path: Path):
    result = security.gate_result(
        "bandit",
        "bandit",
        [
            Finding("B506 yaml_load", "MEDIUM", "ops/loader.py", 5, "yaml.load"),
            Finding("B404 blacklist", "LOW", "ops/loader.py", 0, "import"),
        ],
    )

    [path] = security.write_sarif(tmp_path, [result])

    sarif = json.loads(path.read_text())
    run = sarif["runs"][0]
    assert sarif["version"] == "2.1.0"
    assert run["tool"]["driver"]["name"] == "bandit"
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [
        ("B506 yaml_load", "warning"),
        ("B404 blacklist", "note"),
    ]
    region = run["results"][1]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 1}


def test_trufflehog_verified_secret_fails_the_conversion(tmp_path: Path):
    # Given TruffleHog's JSON lines: a log line, an unverified and a verified finding
    def finding(verified: bool) -> str:
        git = {"commit": "0123456789abcdef", "file": "ops/x.py", "line": 4}
        item = {
            "DetectorName": "AWS",
            "Verified": verified,
            "SourceMetadata": {"Data": {"Git": git}},
        }
        return json.dumps(item)

    source = tmp_path / "trufflehog.json"
    source.write_text("\n".join(['{"level":"info","msg":"scanning"}', finding(False), ""]))
    output = tmp_path / "trufflehog.sarif"

    # Then only a verified secret fails, and both reach the SARIF file
    assert security.main(["security-sarif", str(source), str(output)]) == 0
    source.write_text("\n".join([finding(False), finding(True)]))
    assert security.main(["security-sarif", str(source), str(output)]) == 1
    results = json.loads(output.read_text())["runs"][0]["results"]
    assert [r["level"] for r in results] == ["warning", "error"]


def test_trufflehog_conversion_fails_when_the_scan_wrote_nothing(tmp_path: Path):
    missing = tmp_path / "trufflehog.json"

    assert security.main(["security-sarif", str(missing), str(tmp_path / "out.sarif")]) == 1


class _Answering(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(405)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()


def test_reachability_counts_any_http_answer_and_nothing_else(local_service: str):
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    closed_url = f"http://127.0.0.1:{closed.server_address[1]}/"
    closed.server_close()

    assert security.service_reachable(local_service, timeout=3) is True
    assert security.service_reachable(closed_url, timeout=3) is False


def test_the_repository_itself_passes_the_source_gates():
    """What CI's security workflow scans: every new secret-looking literal in the
    repository is audited (the baseline or an inline pragma) before it lands, not
    found by the workflow afterwards."""
    results = run_gates(ScanContext(root=REPO), ["bandit", "detect-secrets"])

    assert verdicts(results) == {"bandit": Verdict.PASS, "detect-secrets": Verdict.PASS}, [
        result.note for result in results
    ]


def test_trufflehog_conversion_fails_on_output_cut_short(tmp_path: Path, capsys):
    """A scan killed while writing leaves half a line: a failure that names the file and
    line, not an unexpected JSONDecodeError, and never a SARIF file of "no secrets"."""
    source = tmp_path / "trufflehog.json"
    source.write_text(
        '{"level":"info","msg":"scanning"}\n{"DetectorName": "AWS", "Verified": tru\n'
    )
    output = tmp_path / "out.sarif"

    assert security.main(["security-sarif", str(source), str(output)]) == 1
    err = capsys.readouterr().err
    assert f"{source}: line 2 is not JSON" in err
    assert "did not finish" in err
    assert not output.exists()
