"""Gates given planted defects in a copy of the tree (pytest's tmp_path, never the
checkout): Bandit's request-handling rules, detect-secrets on webhook secrets,
pip-audit on packages it could not audit or would leave out, and the workflow
checks of tests/security/test_workflows.py on workflows that run foreign code.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import string
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from ops import security
from ops.security import ScanContext, Verdict, run_gates
from tests.security import test_workflows as wf
from tests.security.test_gates import minimal_project

REPO = Path(__file__).resolve().parents[2]
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return minimal_project(tmp_path / "tree")


def plant(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def random_token(seed: int, length: int = 24) -> str:
    # Built at run time: the repository holds no credential-shaped literal.
    return "".join(random.Random(seed).choices(string.ascii_letters + string.digits, k=length))


# --- Bandit ----------------------------------------------------------------------

BANDIT_PLANTS = {
    "B608": (
        "def find(cursor, event):\n"
        "    name = event['queryStringParameters']['q']\n"
        "    cursor.execute(f\"SELECT * FROM recalls WHERE name = '{name}'\")\n"
    ),
    "B602": (
        "import subprocess\n\n\ndef convert(event):\n"
        "    return subprocess.run(f\"convert {event['body']}\", shell=True, check=False)"
        "  # noqa: S602\n"
    ),
    "B301": "import pickle\n\n\ndef restore(event):\n    return pickle.loads(event['body'])\n",
}


@pytest.mark.parametrize("rule", sorted(BANDIT_PLANTS))
def test_bandit_fails_on_planted_request_handling_defects(tree: Path, rule: str):
    """f-string SQL, shell=True (even behind ruff's noqa) and pickle of the body."""
    plant(tree, "functions/api/planted.py", BANDIT_PLANTS[rule])

    [result] = run_gates(ScanContext(root=tree), ["bandit"])

    assert result.verdict is Verdict.FAIL
    assert any(
        f.rule.startswith(rule) and f.path == "functions/api/planted.py" for f in result.findings
    ), result.findings


# --- detect-secrets --------------------------------------------------------------


def test_detect_secrets_reports_webhook_secrets(tree: Path):
    """a Standard Webhooks signing secret and a Slack incoming-webhook URL."""
    rng = random.Random(5)
    whsec = "whsec_" + base64.b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode()
    hook = (
        "https://hooks.slack.com/services/T"
        + random_token(6, 8).upper()
        + "/B"
        + random_token(7, 8).upper()
        + "/"
        + random_token(8)
    )
    plant(tree, "functions/shared/hooks.py", f'SIGNING = "{whsec}"\nONCALL_URL = "{hook}"\n')

    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    assert result.verdict is Verdict.FAIL
    found = {(f.rule, f.line) for f in result.findings if f.path == "functions/shared/hooks.py"}
    assert ("Base64 High Entropy String", 1) in found
    assert ("Slack Token", 2) in found


# --- pip-audit -------------------------------------------------------------------


def test_pip_audit_does_not_pass_a_dependency_it_could_not_audit(tree: Path):
    """A direct-URL requirement (a fork, a wheel on a mirror) is skipped by pip-audit
    ("URL requirements cannot be pinned"): nothing was audited, and the gate once said PASS,
    which CI's --strict accepted too. pip-audit queries nothing for it, so this runs
    the real tool with the network off."""
    plant(
        tree,
        "requirements/runtime.lock",
        "requests @ https://files.pythonhosted.org/packages/65/47/"
        "7e02164a2a3db50ed6d8a6ab1d6d60b69c4c3fdf57a284257925dfc12bda/"
        "requests-2.19.0-py2.py3-none-any.whl \\\n"
        "    --hash=sha256:" + "a" * 64 + "\n",
    )

    [result] = run_gates(ScanContext(root=tree, online=lambda: True), ["pip-audit"])

    assert result.verdict is not Verdict.PASS, (
        f"{result.verdict}: {result.note} — requests 2.19.0 was skipped, not audited"
    )


def _marker_this_interpreter_does_not_meet() -> str:
    # uv's `--universal` lock splits a package by Python version exactly like this
    # (requirements/dev.lock: networkx 3.6.1 below 3.12, 3.7 from 3.12 on).
    if sys.version_info >= (3, 12):
        return "python_full_version < '3.12'"
    return "python_full_version >= '3.12'"


HASH = "    --hash=sha256:" + "a" * 64 + "\n"


def test_pip_audit_does_not_pass_a_pin_whose_marker_this_python_does_not_meet(tree: Path):
    """pip-audit evaluates each pin's environment marker against the interpreter running
    it and silently drops the pins whose marker does not hold (no skip_reason, nothing
    in its JSON). The gate runs on Python 3.11, the Lambda layer is installed for
    Python 3.13, and the locks are universal: without the gate's own handling every pin
    kept for Python 3.12+ goes unaudited, and a lock of nothing but such pins reads
    "0 pinned packages", PASS. requests 2.19.0 has known vulnerabilities
    (CVE-2018-18074): audited, it fails; unaudited, it must not pass either."""
    plant(
        tree,
        "requirements/runtime.lock",
        f"requests==2.19.0 ; {_marker_this_interpreter_does_not_meet()} \\\n" + HASH,
    )

    [result] = run_gates(ScanContext(root=tree, online=lambda: True), ["pip-audit"])

    assert result.verdict is not Verdict.PASS, (
        f"{result.verdict}: {result.note!r} — requests 2.19.0 is pinned in the lock and "
        "was never audited"
    )


class PipAuditThatReports:
    """Stands in for the pip-audit subprocess: records each requirements file it is
    handed and reports the pins in it, minus the names in `drops`, as pip-audit's JSON."""

    def __init__(self, drops: frozenset[str] = frozenset()) -> None:
        self.handed: list[list[str]] = []
        self.drops = drops

    def __call__(
        self, command: Sequence[str], cwd: Path, env: object = None
    ) -> subprocess.CompletedProcess[str]:
        path = Path(command[list(command).index("--requirement") + 1])
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
        self.handed.append(lines)
        pins = [line.split(" ", 1)[0].split("==") for line in lines]
        report = {
            "dependencies": [
                {"name": name, "version": version, "vulns": []}
                for name, version in pins
                if name not in self.drops
            ]
        }
        return subprocess.CompletedProcess(list(command), 0, json.dumps(report), "")


def test_pip_audit_is_handed_every_pin_of_a_universal_lock_without_its_marker(
    tree: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every pin a universal lock holds is looked up, whichever interpreter runs the
    gate: pip-audit gets the pins without their markers, and the two versions a lock
    pins for two Pythons in separate files (it refuses one package twice in a file)."""
    # Given a lock pinning networkx per Python version and a Windows-only package
    plant(
        tree,
        "requirements/dev.lock",
        "# via uv\n"
        "networkx==3.6.1 ; python_full_version < '3.12' \\\n" + HASH + "    # via moto\n"
        "networkx==3.7 ; python_full_version >= '3.12' \\\n" + HASH + "pywin32==312 ; "
        "sys_platform == 'win32' \\\n" + HASH,
    )
    pip_audit = PipAuditThatReports()
    monkeypatch.setattr(security, "_run", pip_audit)

    # When the gate runs
    [result] = run_gates(ScanContext(root=tree, online=lambda: True), ["pip-audit"])

    # Then pip-audit saw all three pins, none with a marker, one networkx per file
    handed = [line.split(" ", 1)[0] for lines in pip_audit.handed for line in lines]
    assert sorted(handed) == ["networkx==3.6.1", "networkx==3.7", "pywin32==312"]
    assert not any(";" in line for lines in pip_audit.handed for line in lines)
    assert all(line.split(" ", 1)[1].startswith("--hash=sha256:") for line in pip_audit.handed[0])
    assert (result.verdict, result.note) == (Verdict.PASS, "3 pinned packages")


def test_a_pin_missing_from_pip_audits_report_fails_as_not_audited(
    tree: Path, monkeypatch: pytest.MonkeyPatch
):
    """Whatever the reason pip-audit leaves a pin out of its report (a marker it
    evaluated, a future change in how it reads requirements), the pin was not looked
    up: the gate compares the report with the lock and fails on the difference."""
    plant(tree, "requirements/runtime.lock", "boto3==1.40.0 \\\n" + HASH + "rsa==4.9 \\\n" + HASH)
    monkeypatch.setattr(security, "_run", PipAuditThatReports(drops=frozenset({"rsa"})))

    [result] = run_gates(ScanContext(root=tree, online=lambda: True), ["pip-audit"])

    assert result.verdict is Verdict.FAIL
    assert [(f.rule, f.path, f.line) for f in result.findings] == [
        ("not-audited", "requirements/runtime.lock", 3)
    ]
    assert "rsa 4.9" in result.findings[0].message


def test_pip_audit_fails_a_lock_of_which_it_audited_nothing(tree: Path):
    """ "0 pinned packages" is no audit: a lock that yields nothing to look up (emptied,
    or every pin dropped) fails the gate. pip-audit queries nothing here, so this runs
    the real tool with the network off."""
    plant(tree, "requirements/runtime.lock", "# This file was autogenerated by uv\n")

    [result] = run_gates(ScanContext(root=tree, online=lambda: True), ["pip-audit"])

    assert result.verdict is Verdict.FAIL
    assert [(f.rule, f.path) for f in result.findings] == [
        ("nothing-audited", "requirements/runtime.lock")
    ]


def test_the_lock_files_read_as_every_pin_they_hold():
    """The committed locks parse completely: one pin per `name==version` requirement
    line, none without a version, so the comparison with pip-audit's report is exact."""
    for name in security.LOCK_FILES:
        text = (REPO / name).read_text(encoding="utf-8")
        options, pins = security.read_lock_pins(text, name)
        requirement_lines = [
            line for line in text.splitlines() if "==" in line and not line.startswith(("#", " "))
        ]
        assert not options
        assert len(pins) == len(requirement_lines) > 0
        assert all(pin.version and ";" not in pin.requirement for pin in pins)


# --- the workflow checks (tests/security/test_workflows.py, run by CI's `make test`) --

PER_WORKFLOW_CHECKS = [
    wf.test_every_action_is_pinned_by_commit_sha_with_its_version,
    wf.test_every_job_declares_its_permissions,
    wf.test_no_event_value_is_pasted_into_a_shell_script,
    wf.test_checkouts_do_not_keep_the_token,
    wf.test_no_workflow_runs_with_the_base_repository_s_rights_on_foreign_code,
]


@pytest.fixture
def workflows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of .github whose workflows the checks read instead of the checkout's."""
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    directory = tmp_path / ".github" / "workflows"
    monkeypatch.setattr(wf, "WORKFLOWS", directory)
    return directory


def checks_that_object(path: Path) -> list[str]:
    objections = []
    for check in PER_WORKFLOW_CHECKS:
        try:
            check(path)
        except (AssertionError, KeyError, TypeError) as error:
            objections.append(f"{check.__name__}: {error}")
    return objections


def test_a_pull_request_target_workflow_that_runs_the_pr_head_is_rejected(workflows: Path):
    """A "pwn request": pull_request_target runs with the base repository's secrets and
    a write token, and this one checks out and runs the PR's code. Pinned, with
    permissions and without persisted credentials, it once passed every check."""
    planted = plant(
        workflows,
        "preview.yml",
        textwrap.dedent(
            f"""\
            name: preview
            on:
              pull_request_target:
            permissions: {{}}
            jobs:
              preview:
                runs-on: ubuntu-24.04
                permissions:
                  contents: read
                  pull-requests: write
                steps:
                  - uses: {CHECKOUT}
                    with:
                      ref: ${{{{ github.event.pull_request.head.sha }}}}
                      persist-credentials: false
                  - run: make install && make test
            """
        ),
    )
    assert planted in wf.workflow_files()

    assert checks_that_object(planted), "no check rejects pull_request_target + PR head checkout"


def test_a_workflow_named_yaml_is_checked_too(workflows: Path):
    """GitHub runs .github/workflows/*.yaml as well as *.yml: the checks read both, so
    an unpinned third-party action in a .yaml file is looked at too."""
    planted = plant(
        workflows,
        "labels.yaml",
        "name: labels\non: pull_request\npermissions: {}\njobs:\n  label:\n"
        "    runs-on: ubuntu-24.04\n    permissions:\n      pull-requests: write\n"
        "    steps:\n      - uses: actions/labeler@v5\n",
    )

    assert planted in wf.workflow_files()


UNPINNED = {
    "reusable-workflow-on-a-branch": (
        "  deploy:\n    permissions: {}\n"
        "    uses: someorg/shared-workflows/.github/workflows/deploy.yml@main\n"
    ),
    "docker-image-by-tag": (
        "  lint:\n    runs-on: ubuntu-24.04\n    permissions: {}\n"
        "    steps:\n      - uses: docker://ghcr.io/someorg/linter:latest\n"
    ),
}


@pytest.mark.parametrize("kind", sorted(UNPINNED))
def test_an_unpinned_reusable_workflow_or_container_action_fails_the_pin_check(
    workflows: Path, kind: str
):
    """The pin check reads jobs' reusable workflows and docker:// images too: a reusable
    workflow on a branch, or a container action by mutable tag, runs third-party code
    that can change under the same reference."""
    planted = plant(
        workflows,
        "extra.yml",
        "name: extra\non: push\npermissions: {}\njobs:\n"
        "  build:\n    runs-on: ubuntu-24.04\n    permissions: {}\n"
        f"    steps:\n      - uses: {CHECKOUT}\n        with:\n"
        "          persist-credentials: false\n" + UNPINNED[kind],
    )

    with pytest.raises(AssertionError):
        wf.test_every_action_is_pinned_by_commit_sha_with_its_version(planted)


def test_an_event_value_pasted_without_spaces_is_caught(workflows: Path):
    """`${{github.event.pull_request.title}}` is the same expression as the spaced one
    the check looks for; pasted into `run`, a PR title becomes shell code."""
    planted = plant(
        workflows,
        "greet.yml",
        "name: greet\non: pull_request\npermissions: {}\njobs:\n  greet:\n"
        "    runs-on: ubuntu-24.04\n    permissions: {}\n    steps:\n"
        '      - run: echo "${{github.event.pull_request.title}}"\n',
    )

    with pytest.raises(AssertionError):
        wf.test_no_event_value_is_pasted_into_a_shell_script(planted)
