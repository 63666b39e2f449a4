"""A scanner's own config file in the scanned tree switches none of its checks off.

Each scanner reads a config file if it finds one: Bandit a `.bandit` anywhere under
its targets, cfn-lint a `.cfnlintrc` and checkov a `.checkov.yaml` in the directory
it runs in. One such file skips a rule for every line, far from the code it excuses
and with no reason, which docs/SECURITY.md forbids ("never ... skip a whole rule to
get a merge through"). Each test plants a defect the gate fails on, plus the config
file that would skip it, in a copy of the tree (pytest's tmp_path, never the
checkout): the defect is still reported, and the file itself fails the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ops.security import CHECKOV_BIN, ScanContext, Verdict, run_gates
from tests.security.test_gates import write_template
from tests.security.test_gates_on_planted_defects import plant
from tests.security.test_gates_on_planted_defects import tree as tree

REPO = Path(__file__).resolve().parents[2]

IAM_WILDCARD_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "Planted": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "planted",
                "Roles": [{"Ref": "Role"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                },
            },
        },
    },
}
# Every check checkov fails an Allow */* policy on.
CHECKOV_IAM_CHECKS = tuple(f"CKV_AWS_{n}" for n in (62, 63, 107, 108, 109, 110, 111))


def _plant_bandit(root: Path) -> tuple[str, str]:
    plant(
        root,
        "functions/api/search.py",
        "def find(conn, q):\n"
        "    return conn.execute(f\"SELECT id FROM recalls WHERE name = '{q}'\")\n",
    )
    # Bandit walks its targets for a `.bandit` file and obeys it (here: skip B608).
    plant(root, "functions/api/.bandit", "[bandit]\nskips = B608\n")
    return "B608", "functions/api/.bandit"


def _plant_cfn_lint(root: Path) -> tuple[str, str]:
    broken = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicNam": "x"}}}}
    write_template(root, broken)
    # cfn-lint reads ./.cfnlintrc from the directory it runs in (and ~/.cfnlintrc).
    plant(root, ".cfnlintrc", "ignore_checks:\n  - E\n  - W\n")
    return "E", ".cfnlintrc"


def _plant_checkov(root: Path) -> tuple[str, str]:
    installed = REPO / CHECKOV_BIN
    if not installed.exists():
        pytest.skip("checkov is not installed (make checkov)")
    (root / CHECKOV_BIN).parent.parent.parent.mkdir(parents=True, exist_ok=True)
    (root / CHECKOV_BIN.parent.parent).symlink_to(installed.parent.parent)
    write_template(root, IAM_WILDCARD_TEMPLATE)
    # checkov reads ./.checkov.yaml from the directory it runs in (and from $HOME).
    plant(
        root,
        ".checkov.yaml",
        "skip-check:\n" + "".join(f"  - {check}\n" for check in CHECKOV_IAM_CHECKS),
    )
    return "CKV_AWS_", ".checkov.yaml"


PLANTED_CONFIG: dict[str, Callable[[Path], tuple[str, str]]] = {
    "bandit": _plant_bandit,
    "cfn-lint": _plant_cfn_lint,
    "checkov": _plant_checkov,
}


@pytest.mark.parametrize("gate", sorted(PLANTED_CONFIG))
def test_a_scanner_config_file_in_the_tree_neither_hides_a_finding_nor_passes(
    tree: Path, gate: str
):
    # Given a defect the gate fails on, and a config file that skips its rule
    rule, config_file = PLANTED_CONFIG[gate](tree)

    # When the gate runs, as `make security` and CI run it
    [result] = run_gates(ScanContext(root=tree), [gate])

    # Then the defect is reported all the same, and the config file fails the gate
    assert result.verdict is Verdict.FAIL, f"{gate}: {result.verdict} ({result.note})"
    assert any(f.rule.startswith(rule) for f in result.findings), result.findings
    assert ("scanner-config-file", config_file) in {(f.rule, f.path) for f in result.findings}


def test_checkov_reports_template_paths_relative_to_the_tree(tree: Path):
    """checkov runs in a scratch directory (away from any .checkov.yaml), and its findings
    still name the template as the tree knows it, which code scanning links to."""
    _plant_checkov(tree)
    (tree / ".checkov.yaml").unlink()

    [result] = run_gates(ScanContext(root=tree), ["checkov"])

    assert result.verdict is Verdict.FAIL
    assert {f.path for f in result.findings} == {"cdk.out/BabyShield.template.json"}
