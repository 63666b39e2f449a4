"""cdk-nag: AWS Solutions and NIST 800-53 rev 5, enforced with zero findings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdk.nag_report import AWS_SOLUTIONS, NIST_800_53_R5, read_summary
from tests.infrastructure.conftest import Synthesized


def test_every_rule_pack_finds_nothing_unacknowledged(synthesized: Synthesized):
    # Given the synthesized app, When its validation report is read
    summary = read_summary(synthesized.outdir)

    # Then AwsSolutions, NIST 800-53 rev 5 and CloudFormation validation are clean
    assert [f"{f.rule} at {f.path}" for f in summary.enforced] == []
    assert summary.count(AWS_SOLUTIONS) == summary.count(NIST_800_53_R5) == 0


def test_both_packs_ran_in_the_session_synth(synthesized: Synthesized):
    # A clean pack leaves no report entry; its acknowledgements show it was asked.
    rules = " ".join(rule for rules in synthesized.acknowledgements().values() for rule in rules)

    assert "AwsSolutions-" in rules
    assert "NIST.800.53.R5-" in rules


@pytest.mark.parametrize(
    ("nist", "expected_rule"),
    [(False, "AwsSolutions-SQS4"), (True, "NIST.800.53.R5-CloudWatchLogGroupEncrypted")],
)
def test_rule_pack_rejects_a_noncompliant_resource(tmp_path: Path, nist: bool, expected_rule: str):
    """The same wiring as the app's fails a synth on a finding (the check can fail)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_sqs as sqs

    from cdk.app import add_rule_packs

    # Given an app with the rule packs, a queue that accepts plain HTTP and a
    # log group without a KMS key
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Canary")
    sqs.Queue(stack, "Plain")
    logs.LogGroup(stack, "Unencrypted")
    add_rule_packs(app, nist=nist)

    # When it is synthesized, Then the packs fail it
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    rules = {finding.rule for finding in read_summary(tmp_path).enforced}
    assert expected_rule in rules


def test_every_acknowledgement_has_a_specific_reason(synthesized: Synthesized):
    nag = {
        (path, rule): reason
        for path, rules in synthesized.acknowledgements().items()
        for rule, reason in rules.items()
        if "AwsSolutions-" in rule or "NIST.800.53.R5-" in rule
    }

    assert nag, "the app acknowledges findings; none were found"
    for (path, rule), reason in nag.items():
        assert len(reason) >= 40, f"{path} {rule}: reason too short: {reason!r}"


def test_iam_wildcard_acknowledgements_name_the_wildcard(synthesized: Synthesized):
    iam_rules = [
        rule
        for rules in synthesized.acknowledgements().values()
        for rule in rules
        if "AwsSolutions-IAM4" in rule or "AwsSolutions-IAM5" in rule
    ]

    assert iam_rules
    for rule in iam_rules:
        # `Rule[finding]`: the v3 spelling of applies_to; a bare rule id would
        # acknowledge every future wildcard on that construct too.
        assert re.search(r"AwsSolutions-IAM[45]\[.+\]$", rule), rule
