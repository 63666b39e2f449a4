"""The regional WAF WebACL in front of the API, its IP sets and its logging."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from cdk.compliance import acknowledge
from functions.api.middleware.security_headers import SECURITY_HEADERS
from functions.shared import names
from functions.shared.waf_rules import (
    ADMIN_ALLOWLIST_RULE,
    ADMIN_PATHS,
    MAX_QUERY_STRING_BYTES,
    MAX_URI_PATH_BYTES,
    user_agent_patterns,
)

RATE_LIMIT_WINDOW_SECONDS = 300
RATE_LIMITED_BODY_KEY = "rate-limited"
RATE_LIMITED_BODY = json.dumps(
    {
        "error": {
            "code": "rate_limited",
            "message": f"Too many requests. Retry after {RATE_LIMIT_WINDOW_SECONDS} seconds.",
        }
    }
)
# AWS managed groups in evaluation order, each with the rules set to Count
# because they would block legitimate use of this API.
MANAGED_RULE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # The group's fixed size limits (body 8 KB, query 2 KB, path 1 KB) would refuse
    # valid requests first, a 9.4 KB feed webhook among them: the size-limits rule
    # below holds the API's own limits (maxBodyBytes, 4096, 2048) instead.
    (
        "AWSManagedRulesCommonRuleSet",
        ("SizeRestrictions_BODY", "SizeRestrictions_QUERYSTRING", "SizeRestrictions_URIPATH"),
    ),
    ("AWSManagedRulesKnownBadInputsRuleSet", ()),
    ("AWSManagedRulesSQLiRuleSet", ()),
    # Partners call the API from servers in cloud providers; hosting-provider
    # ranges are legitimate callers here, so that rule only counts.
    ("AWSManagedRulesAnonymousIpList", ("HostingProviderIPList",)),
    ("AWSManagedRulesAmazonIpReputationList", ()),
)
# The managed groups' body rules that match what a generated password may hold
# (`../`, `'#`, markup, a URL to an IPv4 host), with the label each adds (AWS WAF
# developer guide, "Baseline rule groups" and "Use-case specific rule groups"). They
# only count inside their group; the rule right after the group (`<group>-body`)
# blocks on their labels for every request but a sign-in. AWS's pattern for a managed
# rule's false positives: labels are seen only by the rules after the group.
BODY_RULES_BUT_LOGIN: dict[str, dict[str, str]] = {
    "AWSManagedRulesCommonRuleSet": {
        "GenericLFI_BODY": "awswaf:managed:aws:core-rule-set:GenericLFI_Body",
        "GenericRFI_BODY": "awswaf:managed:aws:core-rule-set:GenericRFI_Body",
        "CrossSiteScripting_BODY": "awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body",
    },
    "AWSManagedRulesSQLiRuleSet": {
        "SQLi_BODY": "awswaf:managed:aws:sql-database:SQLi_Body",
        "SQLiExtendedPatterns_BODY": "awswaf:managed:aws:sql-database:SQLiExtendedPatterns_Body",
    },
}
# The sign-in: the API's one route with a body value its attack inspection skips, the
# password, which is only hashed (attack_inspection.OPAQUE_BODY_FIELDS). The managed
# rules read a body whole, so on this route they and the `xss` rule skip all of it, and
# the login-email rule reads the login's other field with the WAF's own SQL injection
# and XSS statements. Its path and query string are inspected as any other's.
LOGIN_METHOD = "POST"
LOGIN_PATH = "/auth/login"
LOGIN_INSPECTED_FIELDS = ("email",)
LOGIN_EMAIL_RULE = "login-email"


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


_PATH_TRANSFORMS = [
    wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="URL_DECODE"),
    wafv2.CfnWebACL.TextTransformationProperty(priority=1, type="NORMALIZE_PATH"),
    wafv2.CfnWebACL.TextTransformationProperty(priority=2, type="LOWERCASE"),
]


def _path_starts_with(prefix: str) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
            field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
            positional_constraint="STARTS_WITH",
            search_string=prefix,
            text_transformations=_PATH_TRANSFORMS,
        )
    )


def _is_login(stage_prefix: str) -> wafv2.CfnWebACL.StatementProperty:
    """POST /auth/login as the API routes it: with or without the stage (the execute-api
    URL carries it), with or without a trailing slash; the path URL-decoded, normalised
    and lower-cased as for the admin paths. One regex (no group, which WAF refuses)
    costs less than a string match per spelling."""
    paths = "|".join(f"^{re.escape(prefix + LOGIN_PATH)}/?$" for prefix in ("", stage_prefix))
    return _all_of(
        [
            wafv2.CfnWebACL.StatementProperty(
                byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(method={}),
                    positional_constraint="EXACTLY",
                    search_string=LOGIN_METHOD,
                    text_transformations=[
                        wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                    ],
                )
            ),
            wafv2.CfnWebACL.StatementProperty(
                regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                    regex_string=paths,
                    text_transformations=_PATH_TRANSFORMS,
                )
            ),
        ]
    )


def _not(statement: wafv2.CfnWebACL.StatementProperty) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        not_statement=wafv2.CfnWebACL.NotStatementProperty(statement=statement)
    )


def _all_of(
    statements: Sequence[wafv2.CfnWebACL.StatementProperty],
) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        and_statement=wafv2.CfnWebACL.AndStatementProperty(statements=list(statements))
    )


def _labelled(label: str) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        label_match_statement=wafv2.CfnWebACL.LabelMatchStatementProperty(key=label, scope="LABEL")
    )


def _ip_set(arn: str) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        ip_set_reference_statement=wafv2.CfnWebACL.IPSetReferenceStatementProperty(arn=arn)
    )


def _any_of(
    statements: Sequence[wafv2.CfnWebACL.StatementProperty],
) -> wafv2.CfnWebACL.StatementProperty:
    if len(statements) == 1:
        return statements[0]
    return wafv2.CfnWebACL.StatementProperty(
        or_statement=wafv2.CfnWebACL.OrStatementProperty(statements=list(statements))
    )


def inspection_limit(max_body_bytes: int) -> str:
    """The smallest body inspection window WAF offers API Gateway that covers the limit."""
    for kilobytes in (16, 32, 48, 64):
        if max_body_bytes <= kilobytes * 1024:
            return f"KB_{kilobytes}"
    raise ValueError("WAF inspects at most 64 KB of an API Gateway request's body")


def _size_over(
    field: wafv2.CfnWebACL.FieldToMatchProperty, size: int
) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        size_constraint_statement=wafv2.CfnWebACL.SizeConstraintStatementProperty(
            field_to_match=field,
            comparison_operator="GT",
            size=size,
            text_transformations=[
                wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
            ],
        )
    )


def _decoding(json_escapes: bool) -> list[wafv2.CfnWebACL.TextTransformationProperty]:
    """`json_escapes`: decode `\\u003c` first. Every body the API takes is JSON, whose
    escapes the API decodes before its own inspection; without this a payload sent
    escaped passes the WAF, and its refusal is never evidence for an auto-block."""
    kinds = (
        ["JS_DECODE", "URL_DECODE", "HTML_ENTITY_DECODE"]
        if json_escapes
        else [
            "URL_DECODE",
            "HTML_ENTITY_DECODE",
        ]
    )
    return [
        wafv2.CfnWebACL.TextTransformationProperty(priority=priority, type=kind)
        for priority, kind in enumerate(kinds)
    ]


def _xss_in(
    field: wafv2.CfnWebACL.FieldToMatchProperty, *, json_escapes: bool = False
) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        xss_match_statement=wafv2.CfnWebACL.XssMatchStatementProperty(
            field_to_match=field, text_transformations=_decoding(json_escapes)
        )
    )


def _sqli_in(
    field: wafv2.CfnWebACL.FieldToMatchProperty, *, json_escapes: bool = False
) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        sqli_match_statement=wafv2.CfnWebACL.SqliMatchStatementProperty(
            field_to_match=field, text_transformations=_decoding(json_escapes)
        )
    )


def _login_fields() -> wafv2.CfnWebACL.FieldToMatchProperty:
    """The login body's values but the password. A body WAF cannot parse as JSON is
    read whole, as any other body: a client's sign-in is always valid JSON, so only a
    body built to hide from this rule pays with its password read."""
    return wafv2.CfnWebACL.FieldToMatchProperty(
        json_body=wafv2.CfnWebACL.JsonBodyProperty(
            match_pattern=wafv2.CfnWebACL.JsonMatchPatternProperty(
                included_paths=[f"/{name}" for name in LOGIN_INSPECTED_FIELDS]
            ),
            match_scope="VALUE",
            invalid_fallback_behavior="EVALUATE_AS_STRING",
            oversize_handling="MATCH",
        )
    )


def _block() -> wafv2.CfnWebACL.RuleActionProperty:
    return wafv2.CfnWebACL.RuleActionProperty(block={})


def _credential_protection() -> wafv2.CfnWebACL.DataProtectionConfigProperty:
    """What WAF replaces with `REDACTED` wherever it keeps a request: the logs, the
    sampled requests (GetSampledRequests, the console: three hours of them, which the
    logging configuration's redaction does not reach) and the rule match details.

    The credential headers, and the whole query string: the API takes no credential
    there, but a client that sends its key, token or password in the URL (the
    no-secret-in-logs sweep sends each) must not find it in a sample.
    And the body, which WAF keeps only where a rule matched it: the managed body rules
    count on a sign-in (BODY_RULES_BUT_LOGIN), and their match details would otherwise
    log the part of a password that looked like SQL or markup. (The logging
    configuration's RedactedFields cannot name a body at all.)
    What an investigation reads (address, country, path, method, user agent, rule,
    action) stays."""
    return wafv2.CfnWebACL.DataProtectionConfigProperty(
        data_protections=[
            wafv2.CfnWebACL.DataProtectProperty(
                action="SUBSTITUTION",
                field=wafv2.CfnWebACL.FieldToProtectProperty(
                    field_type="SINGLE_HEADER", field_keys=list(names.WAF_REDACTED_HEADERS)
                ),
                exclude_rule_match_details=False,
                exclude_rate_based_details=False,
            ),
            wafv2.CfnWebACL.DataProtectProperty(
                action="SUBSTITUTION",
                field=wafv2.CfnWebACL.FieldToProtectProperty(field_type="QUERY_STRING"),
                exclude_rule_match_details=False,
                exclude_rate_based_details=False,
            ),
            wafv2.CfnWebACL.DataProtectProperty(
                action="SUBSTITUTION",
                field=wafv2.CfnWebACL.FieldToProtectProperty(field_type="BODY"),
                exclude_rule_match_details=False,
                exclude_rate_based_details=False,
            ),
        ]
    )


class WebAcl(Construct):
    """The WebACL, in priority order (first match wins):

    0. admin allowlist: /admin and /monitoring only from the allowlist IP sets;
    1-2. auto-block IP sets (v4, v6) that `waf_responder` writes;
    3-10. AWS managed groups, the two whose body rules count followed each by a rule
    blocking on those rules' labels but on a sign-in (BODY_RULES_BUT_LOGIN), the SQLi
    group's then by the login-email rule;
    11. rate limit per IP, answered with 429, a JSON body and Retry-After;
    12. geo-block (only when countries are configured);
    13. scanner user agents; 14. oversize requests; 15. XSS (not in a sign-in's body).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: apigateway.Stage,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        admin_cidrs_v4: Sequence[str],
        admin_cidrs_v6: Sequence[str],
        geo_block_countries: Sequence[str],
        rate_limit: int,
        max_body_bytes: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        def ip_set(
            construct_id: str, name: str, version: str, cidrs: Sequence[str]
        ) -> wafv2.CfnIPSet:
            writer = "CDK" if name.startswith(names.PREFIX + "-admin") else "the WAF responder"
            return wafv2.CfnIPSet(
                self,
                construct_id,
                name=name,
                scope="REGIONAL",
                ip_address_version=version,
                addresses=list(cidrs),
                description=f"{name} - written by {writer}",
            )

        self.admin_v4 = ip_set(
            "AdminAllowlistV4", names.ADMIN_ALLOWLIST_IPSET_V4, "IPV4", admin_cidrs_v4
        )
        self.admin_v6 = ip_set(
            "AdminAllowlistV6", names.ADMIN_ALLOWLIST_IPSET_V6, "IPV6", admin_cidrs_v6
        )
        self.auto_block_v4 = ip_set("AutoBlockV4", names.AUTO_BLOCK_IPSET_V4, "IPV4", [])
        self.auto_block_v6 = ip_set("AutoBlockV6", names.AUTO_BLOCK_IPSET_V6, "IPV6", [])
        # waf_responder owns the auto-block addresses. CloudFormation rewrites
        # them only when these resources' own properties change (then the
        # responder's registry holds what to restore); deleting the stack keeps them.
        for blocked in (self.auto_block_v4, self.auto_block_v6):
            blocked.apply_removal_policy(RemovalPolicy.RETAIN)

        # SSM mirrors of the allowlist for the function-level checks (defense in
        # depth behind the WAF). SSM rejects an empty value; a lone comma parses
        # as an empty list, which denies every admin request.
        admin_cidrs = ",".join([*admin_cidrs_v4, *admin_cidrs_v6]) or ","
        self.admin_allowlist_parameter = ssm.StringParameter(
            self,
            "AdminAllowlistParameter",
            parameter_name=names.ADMIN_ALLOWLIST_PARAMETER,
            string_value=admin_cidrs,
            description="CIDRs allowed on /admin and /monitoring (comma-separated)",
        )
        # On-call adds customers to this list by hand, with no deploy (RUNBOOK), and
        # CloudFormation rewrites a parameter only when its template properties change:
        # a value that never changes keeps their additions through every deploy. The
        # admin ranges are protected anyway (the responder reads both lists).
        self.never_block_parameter = ssm.StringParameter(
            self,
            "NeverBlockParameter",
            parameter_name=names.NEVER_BLOCK_PARAMETER,
            string_value=names.NEVER_BLOCK_INITIAL,
            description="CIDRs waf_responder never auto-blocks (comma-separated)",
        )

        stage_prefix = f"/{names.API_STAGE}"
        admin_paths = [
            _path_starts_with(prefix + path)
            for path in ADMIN_PATHS
            for prefix in ("", stage_prefix)
        ]
        rules: list[wafv2.CfnWebACL.RuleProperty] = [
            wafv2.CfnWebACL.RuleProperty(
                name=ADMIN_ALLOWLIST_RULE,
                priority=0,
                action=_block(),
                # The execute-api URL carries the stage (/prod/admin); a custom
                # domain does not (/admin). Both spellings are covered.
                statement=wafv2.CfnWebACL.StatementProperty(
                    and_statement=wafv2.CfnWebACL.AndStatementProperty(
                        statements=[
                            _any_of(admin_paths),
                            wafv2.CfnWebACL.StatementProperty(
                                not_statement=wafv2.CfnWebACL.NotStatementProperty(
                                    statement=_any_of(
                                        [
                                            _ip_set(self.admin_v4.attr_arn),
                                            _ip_set(self.admin_v6.attr_arn),
                                        ]
                                    )
                                )
                            ),
                        ]
                    )
                ),
                visibility_config=_visibility(ADMIN_ALLOWLIST_RULE),
            ),
            wafv2.CfnWebACL.RuleProperty(
                name=names.AUTO_BLOCK_RULE_V4,
                priority=1,
                action=_block(),
                statement=_ip_set(self.auto_block_v4.attr_arn),
                visibility_config=_visibility(names.AUTO_BLOCK_RULE_V4),
            ),
            wafv2.CfnWebACL.RuleProperty(
                name=names.AUTO_BLOCK_RULE_V6,
                priority=2,
                action=_block(),
                statement=_ip_set(self.auto_block_v6.attr_arn),
                visibility_config=_visibility(names.AUTO_BLOCK_RULE_V6),
            ),
        ]
        is_login = _is_login(stage_prefix)
        priority = 3
        for group, counted in MANAGED_RULE_GROUPS:
            body_rules = BODY_RULES_BUT_LOGIN.get(group, {})
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=group,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS",
                            name=group,
                            rule_action_overrides=[
                                wafv2.CfnWebACL.RuleActionOverrideProperty(
                                    name=rule,
                                    action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                                )
                                for rule in (*counted, *body_rules)
                            ]
                            or None,
                        )
                    ),
                    visibility_config=_visibility(group),
                )
            )
            priority += 1
            if body_rules:
                rules.append(
                    wafv2.CfnWebACL.RuleProperty(
                        name=f"{group}-body",
                        priority=priority,
                        action=_block(),
                        statement=_all_of(
                            [
                                _any_of([_labelled(label) for label in body_rules.values()]),
                                _not(is_login),
                            ]
                        ),
                        visibility_config=_visibility(f"{group}-body"),
                    )
                )
                priority += 1
            if group == "AWSManagedRulesSQLiRuleSet":
                # Right after the SQL injection rules, which skip the login's body.
                login_fields = _login_fields()
                rules.append(
                    wafv2.CfnWebACL.RuleProperty(
                        name=LOGIN_EMAIL_RULE,
                        priority=priority,
                        action=_block(),
                        statement=_all_of(
                            [
                                is_login,
                                _any_of(
                                    [
                                        _sqli_in(login_fields, json_escapes=True),
                                        _xss_in(login_fields, json_escapes=True),
                                    ]
                                ),
                            ]
                        ),
                        visibility_config=_visibility(LOGIN_EMAIL_RULE),
                    )
                )
                priority += 1
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name=names.RATE_RULE,
                priority=priority,
                action=wafv2.CfnWebACL.RuleActionProperty(
                    block=wafv2.CfnWebACL.BlockActionProperty(
                        custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                            response_code=429,
                            custom_response_body_key=RATE_LIMITED_BODY_KEY,
                            # WAF's own answer reaches the client without passing the
                            # function or the gateway's responses: the security headers
                            # go with it (custom response headers are not prefixed).
                            response_headers=[
                                wafv2.CfnWebACL.CustomHTTPHeaderProperty(name=name, value=value)
                                for name, value in {
                                    **SECURITY_HEADERS,
                                    "Retry-After": str(RATE_LIMIT_WINDOW_SECONDS),
                                }.items()
                            ],
                        )
                    )
                ),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=rate_limit,
                        aggregate_key_type="IP",
                        evaluation_window_sec=RATE_LIMIT_WINDOW_SECONDS,
                    )
                ),
                visibility_config=_visibility(names.RATE_RULE),
            )
        )
        priority += 1
        if geo_block_countries:
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name="geo-block",
                    priority=priority,
                    action=_block(),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        geo_match_statement=wafv2.CfnWebACL.GeoMatchStatementProperty(
                            country_codes=list(geo_block_countries)
                        )
                    ),
                    visibility_config=_visibility("geo-block"),
                )
            )
            priority += 1

        self.user_agents = wafv2.CfnRegexPatternSet(
            self,
            "SuspiciousUserAgents",
            name=f"{names.PREFIX}-suspicious-user-agents",
            scope="REGIONAL",
            regular_expression_list=user_agent_patterns(),
            description="User agents of scanners and attack tools",
        )
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="suspicious-user-agents",
                priority=priority,
                action=_block(),
                statement=wafv2.CfnWebACL.StatementProperty(
                    regex_pattern_set_reference_statement=wafv2.CfnWebACL.RegexPatternSetReferenceStatementProperty(
                        arn=self.user_agents.attr_arn,
                        field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                            single_header={"Name": "user-agent"}
                        ),
                        text_transformations=[
                            wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")
                        ],
                    )
                ),
                visibility_config=_visibility("suspicious-user-agents"),
            )
        )
        priority += 1
        body = wafv2.CfnWebACL.FieldToMatchProperty(
            body=wafv2.CfnWebACL.BodyProperty(oversize_handling="MATCH")
        )
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="size-limits",
                priority=priority,
                action=_block(),
                # A body past WAF's inspection window would hide its payload
                # from every rule above, so it is refused rather than passed.
                statement=_any_of(
                    [
                        _size_over(body, max_body_bytes),
                        _size_over(
                            wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}), MAX_URI_PATH_BYTES
                        ),
                        _size_over(
                            wafv2.CfnWebACL.FieldToMatchProperty(query_string={}),
                            MAX_QUERY_STRING_BYTES,
                        ),
                    ]
                ),
                visibility_config=_visibility("size-limits"),
            )
        )
        priority += 1
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="xss",
                priority=priority,
                action=_block(),
                statement=_any_of(
                    [
                        # The login's body but its password: the login-email rule.
                        _all_of(
                            [
                                _not(is_login),
                                _xss_in(
                                    wafv2.CfnWebACL.FieldToMatchProperty(
                                        body=wafv2.CfnWebACL.BodyProperty(oversize_handling="MATCH")
                                    ),
                                    json_escapes=True,
                                ),
                            ]
                        ),
                        _xss_in(wafv2.CfnWebACL.FieldToMatchProperty(query_string={})),
                        _xss_in(wafv2.CfnWebACL.FieldToMatchProperty(uri_path={})),
                    ]
                ),
                visibility_config=_visibility("xss"),
            )
        )
        self.rules = rules

        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=names.WEB_ACL,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            custom_response_bodies={
                RATE_LIMITED_BODY_KEY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=RATE_LIMITED_BODY
                )
            },
            rules=rules,
            visibility_config=_visibility(names.WEB_ACL),
            data_protection_config=_credential_protection(),
            # The size rule refuses bodies past max_body_bytes, so WAF must be sent at
            # least that much of each body, or a payload past its window would pass
            # every other rule unseen. 16 KB is API Gateway's default and free.
            association_config=wafv2.CfnWebACL.AssociationConfigProperty(
                request_body={
                    "API_GATEWAY": wafv2.CfnWebACL.RequestBodyAssociatedResourceTypeConfigProperty(
                        default_size_inspection_limit=inspection_limit(max_body_bytes)
                    )
                }
            ),
        )

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=names.WAF_LOG_GROUP,
            retention=log_retention,
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # WAF wants the log group ARN without the trailing `:*`.
        self.log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=names.WAF_LOG_GROUP,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.logging = wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[self.log_group_arn],
            # The query string too: the API takes no credential there, but a client that
            # puts a key or token in the URL must not find it in our logs. What the
            # responder and the dashboards read (address, rule, action) stays.
            redacted_fields=[
                *(
                    wafv2.CfnLoggingConfiguration.FieldToMatchProperty(
                        single_header={"Name": header}
                    )
                    for header in names.WAF_REDACTED_HEADERS
                ),
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(query_string={}),
            ],
        )
        self.logging.node.add_dependency(self.log_group)

        self.association = wafv2.CfnWebACLAssociation(
            self,
            "ApiAssociation",
            resource_arn=stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
        # The association fails when the stage does not exist yet.
        self.association.node.add_dependency(stage)

    def grant_responder(
        self, responder: lambda_.Function, *, also_query: Sequence[logs.ILogGroup]
    ) -> None:
        """What `waf_responder` needs: its IP sets, rate-rule keys, log queries, settings."""
        self._grant_blocking(responder, sid="AutoBlockIpSets")
        responder.add_environment("WEB_ACL_ID", self.web_acl.attr_id)
        responder.add_to_role_policy(
            iam.PolicyStatement(
                sid="RateRuleOffenders",
                actions=["wafv2:GetRateBasedStatementManagedKeys"],
                resources=[self.web_acl.attr_arn],
            )
        )
        query_targets = [self.log_group, *also_query]
        responder.add_to_role_policy(
            iam.PolicyStatement(
                sid="StartOffenderQueries",
                actions=["logs:StartQuery"],
                resources=[group.log_group_arn for group in query_targets],
            )
        )
        responder.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadOffenderQueries",
                actions=["logs:GetQueryResults", "logs:StopQuery"],
                resources=["*"],
            )
        )
        acknowledge(
            responder.role,  # type: ignore[arg-type]
            "AwsSolutions-IAM5",
            "logs:GetQueryResults and logs:StopQuery take a query id, not a resource "
            "ARN (queries start only on two log groups); X-Ray trace APIs likewise.",
            applies_to=["Resource::*"],
        )

    def grant_api(self, api: lambda_.Function) -> None:
        """The API reads the admin allowlist for its own (second) check, and its admin
        block routes (/admin/blocks) change the auto-block IP sets as the responder
        does."""
        self._grant_blocking(api, sid="AdminBlockIpSets")

    def _grant_blocking(self, function: lambda_.Function, *, sid: str) -> None:
        """What every writer of blocks needs (functions/shared/blocks.py): the two IP
        sets, by id, and the protected lists it never blocks."""
        function.add_environment("AUTO_BLOCK_IPSET_V4_ID", self.auto_block_v4.attr_id)
        function.add_environment("AUTO_BLOCK_IPSET_V6_ID", self.auto_block_v6.attr_id)
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid=sid,
                actions=["wafv2:GetIPSet", "wafv2:UpdateIPSet"],
                resources=[self.auto_block_v4.attr_arn, self.auto_block_v6.attr_arn],
            )
        )
        # One GetParameter each (SSMProvider.get in blocks.read_cidrs). Plain String
        # parameters, no key: nothing to decrypt.
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadProtectedAddressLists",
                actions=["ssm:GetParameter"],
                resources=[
                    self.admin_allowlist_parameter.parameter_arn,
                    self.never_block_parameter.parameter_arn,
                ],
            )
        )
