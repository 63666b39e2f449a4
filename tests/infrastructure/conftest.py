"""One synth for the whole session; every infrastructure test reads its output.

The CDK library starts its Node.js process when `aws_cdk` is first imported, so
the project's Node.js (`make node`) goes first on PATH here, before any test
module imports it: a supported release, and so no end-of-life warning.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = REPO_ROOT / ".node" / "node_modules" / ".bin"
CHECKOV = REPO_ROOT / ".tools" / "checkov" / "bin" / "checkov"
STACK = "BabyShield"


def _make(target: str) -> None:
    subprocess.run(
        ["make", "--no-print-directory", "-s", target], cwd=REPO_ROOT, check=True, timeout=900
    )


if not (NODE_BIN / "node").exists():
    _make("node")
os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    template_json: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{STACK}.template.json"

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def trigger_running(self, package: str) -> str:
        """The logical id of the one deploy-time trigger that runs `package`'s function."""
        prefix = f"Functions{package.replace('_', '')}Function"

        def target(handler: dict[str, Any]) -> str:
            # A version (Ref) when the trigger re-runs on code changes, else the function.
            return str(handler["Ref"] if "Ref" in handler else handler["Fn::GetAtt"][0])

        (trigger_id,) = (
            logical_id
            for logical_id, trigger in self.resources("Custom::Trigger").items()
            if target(trigger["Properties"]["HandlerArn"]).startswith(prefix)
        )
        return trigger_id

    def acknowledgements(self) -> dict[str, dict[str, str]]:
        """Construct path -> {rule id: reason}, from the assembly's metadata."""
        found: dict[str, dict[str, str]] = {}
        for path, entries in self.metadata.items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    found.setdefault(path, {}).update(entry["data"])
        return found


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from cdk.app import build_app, default_context

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, _ = build_app(outdir=str(outdir), context=default_context())
    try:
        app.synth()
    except RuntimeError as error:
        # Reported (not enforced) NIST findings raise after the assembly is
        # written; test_cdk_nag decides what the report means.
        if "ValidationFailed" not in str(error):
            raise
    return Synthesized(
        outdir=outdir,
        template_json=json.loads((outdir / f"{STACK}.template.json").read_text()),
        metadata=json.loads((outdir / f"{STACK}.metadata.json").read_text()),
    )


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(synthesized.template_json)


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    if not CHECKOV.exists():
        _make("checkov")
    return CHECKOV


# What Lambda does with the role of a function in a VPC: its network interfaces.
VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
_LOG_ACTIONS = frozenset({"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"})
# AWS managed policies a function role may carry, with the actions AWS
# publishes for them (the permission tests model no other one).
AWS_MANAGED_POLICIES: dict[str, frozenset[str]] = {
    "AWSLambdaBasicExecutionRole": _LOG_ACTIONS,
    "AWSLambdaVPCAccessExecutionRole": _LOG_ACTIONS | frozenset(VPC_ACTIONS),
}
