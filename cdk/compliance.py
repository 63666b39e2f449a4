"""Recorded exceptions to the rule packs: cdk-nag acknowledgements and checkov skips.

Every exception goes through these two helpers so that each one carries a
reason, IAM wildcard acknowledgements name the exact wildcard (the v2
`applies_to`, spelled `Rule[finding]` in cdk-nag v3), and the tests can list
them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct

_MIN_REASON = 20


def acknowledge(
    scope: IConstruct, rule_id: str, reason: str, *, applies_to: Iterable[str] = ()
) -> None:
    """Acknowledge a cdk-nag finding on `scope` (and its children).

    `applies_to` names the findings of a multi-finding rule such as
    AwsSolutions-IAM5 (`Resource::*`, `Action::xray:*`); each is acknowledged
    on its own, so a new kind of wildcard still fails the check. One finding can
    stand for many statements (`Resource::*` for every statement on `*`):
    tests/infrastructure/test_function_permissions.py limits those.
    """
    if len(reason) < _MIN_REASON:
        raise ValueError(f"{rule_id}: a suppression needs a specific reason, got {reason!r}")
    findings = list(applies_to)
    if rule_id.startswith("AwsSolutions-IAM5") and not findings:
        raise ValueError("AwsSolutions-IAM5 acknowledgements must name the wildcard (applies_to)")
    ids = [f"{rule_id}[{finding}]" for finding in findings] or [rule_id]
    for finding_id in ids:
        Validations.of(scope).acknowledge(Acknowledgment(id=finding_id, reason=reason))


def skip_checkov(resource: IConstruct, check_id: str, comment: str) -> None:
    """Record a checkov skip in the resource's template metadata, with its reason."""
    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    if not isinstance(cfn, CfnResource):
        raise TypeError(f"{resource.node.path} has no CloudFormation resource to annotate")
    if len(comment) < _MIN_REASON:
        raise ValueError(f"{check_id}: a checkov skip needs a specific reason, got {comment!r}")
    existing: dict[str, Any] = cfn.get_metadata("checkov") or {}
    skips = [*existing.get("skip", []), {"id": check_id, "comment": comment}]
    cfn.add_metadata("checkov", {"skip": skips})


def record_cdk_provider_exceptions(stack: IConstruct) -> None:
    """Checkov skips for the deploy-time provider functions that CDK itself adds.

    These singletons (default security group restriction, triggers) run only
    while CloudFormation deploys, touch no data, and their code is CDK's.
    """
    reasons = {
        "CKV_AWS_115": "CDK deploy-time provider: runs once per deployment, no concurrency to cap.",
        "CKV_AWS_116": "CDK deploy-time provider: CloudFormation invokes it and reports failures.",
        "CKV_AWS_117": "CDK deploy-time provider: calls AWS APIs only, reaches no VPC resource.",
    }
    for handler in cdk_provider_handlers(stack):
        for check_id, reason in reasons.items():
            skip_checkov(handler, check_id, reason)


def cdk_provider_handlers(stack: IConstruct) -> list[CfnResource]:
    """The functions of CDK's own deploy-time providers (singletons on the stack)."""
    found: list[CfnResource] = []
    for child in stack.node.children:
        if not child.node.id.endswith("CustomResourceProvider"):
            continue
        handler = child.node.try_find_child("Handler")
        if isinstance(handler, CfnResource):
            found.append(handler)
    return found
