"""CDK entry point: `make synth`, or the CDK CLI through cdk.json.

cdk-nag runs inside every synth through CDK's policy validation: the AWS
Solutions pack and the NIST 800-53 rev 5 pack (context `babyshield:nist`, on by
default), next to CloudFormation's own validation. Any unacknowledged finding
fails the synth; every acknowledgement carries its reason (cdk/compliance.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks, NagPack, NIST80053R5Checks

from cdk.config import CONTEXT_PREFIX, DeploymentConfig
from cdk.nag_report import format_summary, read_summary
from cdk.stack import BabyShieldStack

STACK_NAME = "BabyShield"
# Beside the assembly: the cdk-nag packs the synth ran (record_rule_packs).
RULE_PACKS_FILE = "rule-packs.json"
CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def default_context() -> dict[str, Any]:
    """The context in cdk.json, for callers that build the app without the CDK CLI."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def build_app(
    *, outdir: str | None = None, context: dict[str, Any] | None = None
) -> tuple[App, BabyShieldStack]:
    app = App(outdir=outdir, context=context)
    config = DeploymentConfig.from_context(app.node)
    stack = BabyShieldStack(
        app,
        STACK_NAME,
        config=config,
        description="BabyShield recall API: WAF, API Gateway, Lambda, RDS, rotation, detection",
        env=Environment(account=config.account, region=config.region),
        termination_protection=True,
    )
    Tags.of(app).add("project", "babyshield")
    packs = add_rule_packs(app, nist=_flag(app.node.try_get_context(CONTEXT_PREFIX + "nist")))
    record_rule_packs(Path(app.outdir), packs)
    return app, stack


def add_rule_packs(app: App, *, nist: bool) -> list[str]:
    """cdk-nag packs that check every stack of `app` during synth; returns their names."""
    packs: list[NagPack] = [AwsSolutionsChecks(app)]
    if nist:
        packs.append(NIST80053R5Checks(app))
    Validations.of(app).add_plugins(*packs)
    return [pack.read_pack_name for pack in packs]


def record_rule_packs(outdir: Path, packs: list[str]) -> None:
    """Name the packs this synth runs, beside the assembly: a clean pack leaves no
    entry in CDK's validation report, so this is the scanning gate's evidence that
    it ran (ops/security.py)."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / RULE_PACKS_FILE).write_text(json.dumps({"packs": packs}), encoding="utf-8")


def _flag(value: object) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


def main() -> int:
    # Under the CDK CLI the context (cdk.json included) arrives in CDK_CONTEXT_JSON.
    context = None if "CDK_CONTEXT_JSON" in os.environ else default_context()
    outdir = os.environ.get("CDK_OUTDIR", "cdk.out")
    app, _ = build_app(outdir=outdir, context=context)
    try:
        app.synth()
    except RuntimeError as error:
        # CDK raises ValidationFailed after writing the whole assembly and the
        # report; the summary below names the findings instead of a stack trace.
        if "ValidationFailed" not in str(error):
            raise
    summary = read_summary(Path(outdir))
    print(format_summary(summary), file=sys.stderr)
    enforced = summary.enforced
    if enforced:
        for finding in enforced:
            print(f"{finding.rule}: {finding.path}: {finding.description}", file=sys.stderr)
        return 1
    print(f"template: {outdir}/BabyShield.template.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
