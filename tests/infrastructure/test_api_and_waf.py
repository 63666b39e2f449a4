"""API Gateway stage and the WAF WebACL in front of it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
from aws_cdk.assertions import Match

from cdk.waf import BODY_RULES_BUT_LOGIN, LOGIN_EMAIL_RULE, inspection_limit
from functions.api.middleware.attack_inspection import OPAQUE_BODY_FIELDS
from functions.shared import names
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.waf_evaluation import (
    MAX_WEB_ACL_WCU,
    Request,
    blocking_rule,
    capacity,
    objects_in,
)

EXPECTED_RULE_ORDER = [
    "admin-allowlist",
    names.AUTO_BLOCK_RULE_V4,
    names.AUTO_BLOCK_RULE_V6,
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesCommonRuleSet-body",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesSQLiRuleSet",
    "AWSManagedRulesSQLiRuleSet-body",
    LOGIN_EMAIL_RULE,
    "AWSManagedRulesAnonymousIpList",
    "AWSManagedRulesAmazonIpReputationList",
    names.RATE_RULE,
    "suspicious-user-agents",
    "size-limits",
    "xss",
]


def _web_acl(synthesized: Synthesized) -> dict[str, Any]:
    (acl,) = synthesized.resources("AWS::WAFv2::WebACL").values()
    properties: dict[str, Any] = acl["Properties"]
    return properties


def _rule(acl: dict[str, Any], name: str) -> dict[str, Any]:
    return next(rule for rule in acl["Rules"] if rule["Name"] == name)


def test_stage_logs_json_traces_and_throttles(synthesized: Synthesized):
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]

    access_format = json.loads(properties["AccessLogSetting"]["Format"])
    assert access_format["ip"] == "$context.identity.sourceIp"
    assert access_format["status"] == "$context.status"
    assert properties["TracingEnabled"] is True
    (method_settings,) = properties["MethodSettings"]
    assert method_settings["LoggingLevel"] == "ERROR"
    assert method_settings["DataTraceEnabled"] is False
    assert method_settings["ThrottlingRateLimit"] == 100
    assert method_settings["ThrottlingBurstLimit"] == 50  # the API function's concurrency


# What the client writes itself into a request, as API Gateway would put it into an
# access-log line: as sent, nothing escaped (AWS documents no escaping of $context
# values in a log format).
CLIENT_WRITTEN = {
    # A user agent that closes its string and names another caller.
    "$context.identity.userAgent": 'Mozilla/5.0","ip":"203.0.113.66',
    # A path with a quote and a backslash.
    "$context.path": '/recalls/"\\',
}
PEER = "192.0.2.10"


@pytest.mark.parametrize("variable", sorted(CLIENT_WRITTEN))
def test_an_access_log_line_is_json_with_the_gateways_values_whatever_the_client_sends(
    synthesized: Synthesized, variable: str
):
    """The format quotes each $context value in a JSON string, and API Gateway inserts
    the value as it is. A value the client writes (its user agent, its path) could then
    close the string: the line stops being JSON, or carries a second `ip` that parsers
    take over the real one. Only values the gateway makes or checks itself belong there;
    the WAF's log keeps the user agent and the path, JSON-encoded by AWS."""
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    log_format = stage["Properties"]["AccessLogSetting"]["Format"]
    sent = {"$context.identity.sourceIp": PEER, variable: CLIENT_WRITTEN[variable]}

    def value(match: re.Match[str]) -> str:
        return sent.get(match.group(0), "x")

    line = re.sub(r"\$context\.[A-Za-z.]+", value, log_format)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        pytest.fail(f"{variable} sent by the client breaks the line's JSON ({error}): {line}")

    assert record["ip"] == PEER, f"{variable} sent by the client names the caller: {line}"
    assert len(record) == log_format.count("$context."), f"fields added by {variable}: {line}"


def test_the_default_endpoint_refuses_tls_below_1_2(synthesized: Synthesized, template: Any):
    """Without its own policy a regional API keeps the legacy TLS_1_0 (TLS 1.0/1.1
    accepted); neither cfn-lint nor checkov checks the value a RestApi carries."""
    (rest_api,) = synthesized.resources("AWS::ApiGateway::RestApi").values()
    properties = rest_api["Properties"]

    template.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            # TLS 1.3, and TLS 1.2 with forward-secret AES-GCM suites only
            "SecurityPolicy": "SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09",
            "EndpointAccessMode": "BASIC",
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
        },
    )
    # The policy guards the default execute-api endpoint, which stays the way in
    assert properties.get("DisableExecuteApiEndpoint", False) is False
    # AWS recommends that a custom domain carry its API's policy (none exists yet)
    for domain in synthesized.resources("AWS::ApiGateway::DomainName").values():
        assert domain["Properties"]["SecurityPolicy"] == properties["SecurityPolicy"]
        assert domain["Properties"]["EndpointAccessMode"] == properties["EndpointAccessMode"]


def test_every_method_validates_its_request(synthesized: Synthesized, template: Any):
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator",
        {"ValidateRequestBody": True, "ValidateRequestParameters": True},
    )
    (validator_id,) = synthesized.resources("AWS::ApiGateway::RequestValidator")
    methods = synthesized.resources("AWS::ApiGateway::Method").values()

    assert len(methods) == 2
    for method in methods:
        assert method["Properties"]["RequestValidatorId"] == {"Ref": validator_id}
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY"


def test_waf_is_associated_with_the_stage_after_it_exists(synthesized: Synthesized):
    (stage_id,) = synthesized.resources("AWS::ApiGateway::Stage")
    (association,) = synthesized.resources("AWS::WAFv2::WebACLAssociation").values()

    assert stage_id in association["DependsOn"]
    assert stage_id in json.dumps(association["Properties"]["ResourceArn"])


def test_web_acl_rules_are_in_the_required_order(synthesized: Synthesized):
    acl = _web_acl(synthesized)

    ordered = [rule["Name"] for rule in sorted(acl["Rules"], key=lambda r: r["Priority"])]

    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    assert ordered == EXPECTED_RULE_ORDER
    assert len({rule["Priority"] for rule in acl["Rules"]}) == len(acl["Rules"])


def test_admin_paths_need_the_allowlist_with_and_without_stage_prefix(synthesized: Synthesized):
    statement = _rule(_web_acl(synthesized), "admin-allowlist")["Statement"]["AndStatement"]
    paths_statement, not_allowlisted = statement["Statements"]

    prefixes = {
        s["ByteMatchStatement"]["SearchString"]
        for s in paths_statement["OrStatement"]["Statements"]
    }
    ip_sets = not_allowlisted["NotStatement"]["Statement"]["OrStatement"]["Statements"]

    assert prefixes == {"/admin", "/prod/admin", "/monitoring", "/prod/monitoring"}
    transforms = paths_statement["OrStatement"]["Statements"][0]["ByteMatchStatement"][
        "TextTransformations"
    ]
    assert [t["Type"] for t in transforms] == ["URL_DECODE", "NORMALIZE_PATH", "LOWERCASE"]
    assert len(ip_sets) == 2


def test_the_api_and_the_waf_refuse_the_same_bodies_and_waf_sees_all_it_allows(
    synthesized: Synthesized,
):
    acl = _web_acl(synthesized)
    (body_size,) = [
        statement["SizeConstraintStatement"]
        for statement in _rule(acl, "size-limits")["Statement"]["OrStatement"]["Statements"]
        if "Body" in statement["SizeConstraintStatement"]["FieldToMatch"]
    ]
    (api,) = [
        fn["Properties"]
        for fn in synthesized.resources("AWS::Lambda::Function").values()
        if fn["Properties"].get("Handler") == "functions.api.handler.lambda_handler"
    ]
    inspected = acl["AssociationConfig"]["RequestBody"]["API_GATEWAY"]

    # A larger body is refused by the WAF, and by the API itself (a local stack has no WAF)
    assert body_size["ComparisonOperator"] == "GT"
    assert body_size["FieldToMatch"]["Body"] == {"OversizeHandling": "MATCH"}
    limit = body_size["Size"]
    assert api["Environment"]["Variables"]["MAX_BODY_BYTES"] == str(limit)
    # The largest body anyone may send is all inside what WAF is sent to inspect
    window = int(inspected["DefaultSizeInspectionLimit"].removeprefix("KB_")) * 1024
    assert limit <= window
    # The default, 16 KB: no inspection surcharge
    assert limit == 16 * 1024
    assert window == 16 * 1024
    # And no rule before it refuses a smaller body: the common rule set's fixed
    # limits (body 8 KB, query 2 KB, path 1 KB) only count
    common = _rule(acl, "AWSManagedRulesCommonRuleSet")["Statement"]["ManagedRuleGroupStatement"]
    counted = {
        o["Name"] for o in common["RuleActionOverrides"] if o["ActionToUse"] == {"Count": {}}
    }
    assert {
        "SizeRestrictions_BODY",
        "SizeRestrictions_QUERYSTRING",
        "SizeRestrictions_URIPATH",
    } <= counted


@pytest.mark.parametrize(
    ("limit", "window"),
    [(1, "KB_16"), (16384, "KB_16"), (16385, "KB_32"), (49152, "KB_48"), (65536, "KB_64")],
)
def test_the_inspection_window_is_the_smallest_that_covers_the_limit(limit: int, window: str):
    assert inspection_limit(limit) == window


def test_rate_rule_answers_429_with_retry_after_and_json(synthesized: Synthesized):
    acl = _web_acl(synthesized)
    rule = _rule(acl, names.RATE_RULE)

    rate = rule["Statement"]["RateBasedStatement"]
    response = rule["Action"]["Block"]["CustomResponse"]
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]

    assert rate == {"AggregateKeyType": "IP", "EvaluationWindowSec": 300, "Limit": 2000}
    assert response["ResponseCode"] == 429
    assert {"Name": "Retry-After", "Value": "300"} in response["ResponseHeaders"]
    # WAF answers the client itself: the security headers must be in its response
    from functions.api.middleware.security_headers import SECURITY_HEADERS

    headers = {h["Name"]: h["Value"] for h in response["ResponseHeaders"]}
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert all(len(value) <= 255 for value in headers.values())  # WAF's limit per value
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"])["error"]["code"] == "rate_limited"


def test_anonymous_ip_list_counts_hosting_providers_only(synthesized: Synthesized):
    group = _rule(_web_acl(synthesized), "AWSManagedRulesAnonymousIpList")["Statement"][
        "ManagedRuleGroupStatement"
    ]

    assert group["RuleActionOverrides"] == [
        {"ActionToUse": {"Count": {}}, "Name": "HostingProviderIPList"}
    ]


def test_waf_logs_redact_credentials(synthesized: Synthesized, template: Any):
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": names.WAF_LOG_GROUP, "KmsKeyId": Match.any_value()}
    )
    (logging,) = synthesized.resources("AWS::WAFv2::LoggingConfiguration").values()

    redacted = logging["Properties"]["RedactedFields"]

    assert {"SingleHeader": {"Name": "authorization"}} in redacted
    assert {"SingleHeader": {"Name": "cookie"}} in redacted
    assert {"SingleHeader": {"Name": "x-api-key"}} in redacted
    assert {"QueryString": {}} in redacted
    assert names.WAF_LOG_GROUP in json.dumps(logging["Properties"]["LogDestinationConfigs"])


def _visibility_configs(acl: dict[str, Any]) -> list[dict[str, Any]]:
    return [acl["VisibilityConfig"], *(rule["VisibilityConfig"] for rule in acl["Rules"])]


def test_credentials_stay_out_of_waf_sampled_requests_as_well_as_its_logs(
    synthesized: Synthesized,
):
    """The logging configuration's RedactedFields reach the log group only: "the
    redacted fields configuration for logging has no impact on request sampling" (WAF
    Developer Guide). The web ACL and every rule sample requests, which
    GetSampledRequests and the console show for three hours to any principal with
    wafv2:Get*. The web ACL's own data protection applies wherever WAF keeps a
    request (logs, sampled requests, rule match details): it must replace each
    credential header, and the query string a client may put a key or token in,
    with no exclusion for rule match details or rate-based details."""
    acl = _web_acl(synthesized)
    sampled = [
        config["MetricName"]
        for config in _visibility_configs(acl)
        if config.get("SampledRequestsEnabled")
    ]
    if not sampled:
        return

    protected_headers: set[str] = set()
    every_header = False
    query_string = False
    for protection in acl.get("DataProtectionConfig", {}).get("DataProtections", []):
        assert protection["Action"] in ("SUBSTITUTION", "HASH")
        if protection.get("ExcludeRuleMatchDetails") or protection.get("ExcludeRateBasedDetails"):
            continue  # the credential would still be kept where a rule matched it
        field = protection["Field"]
        if field["FieldType"] == "SINGLE_HEADER":
            keys = field.get("FieldKeys") or []
            every_header = every_header or not keys
            protected_headers |= {key.lower() for key in keys}
        if field["FieldType"] == "QUERY_STRING":
            query_string = True

    unprotected = set() if every_header else set(names.WAF_REDACTED_HEADERS) - protected_headers
    assert not unprotected, (
        f"rules {sampled} sample requests, and the web ACL's data protection leaves "
        f"{sorted(unprotected)} in clear in them"
    )
    assert query_string, f"rules {sampled} sample requests with the query string in clear"


def test_a_password_a_body_rule_matches_on_a_sign_in_is_kept_nowhere(synthesized: Synthesized):
    """The managed body rules count on a sign-in (cdk/waf.py, BODY_RULES_BUT_LOGIN), so
    a password that looks like SQL or markup matches one, and WAF logs what a rule
    matched (ruleMatchDetails.matchedData) for counting rules too. The logging
    configuration's RedactedFields cannot name a body (UriPath, QueryString,
    SingleHeader, Method only); the web ACL's data protection can (field type BODY),
    and must cover the whole body, rule match details included."""
    acl = _web_acl(synthesized)
    body = [
        protection
        for protection in acl.get("DataProtectionConfig", {}).get("DataProtections", [])
        if protection["Field"]["FieldType"] == "BODY"
    ]

    assert BODY_RULES_BUT_LOGIN, "no body rule counts on a sign-in: revisit this test"
    assert len(body) == 1, "the web ACL keeps what its body rules matched in clear"
    (protection,) = body
    # A hash of a password fragment, unsalted but for the account id, can be guessed.
    assert protection["Action"] == "SUBSTITUTION"
    assert not protection["Field"].get("FieldKeys"), "only part of the body is protected"
    assert not protection.get("ExcludeRuleMatchDetails")
    assert not protection.get("ExcludeRateBasedDetails")


def test_ip_sets_exist_with_the_shared_names(synthesized: Synthesized):
    ip_sets = {
        s["Properties"]["Name"]: s["Properties"]["IPAddressVersion"]
        for s in synthesized.resources("AWS::WAFv2::IPSet").values()
    }

    assert ip_sets == {
        names.ADMIN_ALLOWLIST_IPSET_V4: "IPV4",
        names.ADMIN_ALLOWLIST_IPSET_V6: "IPV6",
        names.AUTO_BLOCK_IPSET_V4: "IPV4",
        names.AUTO_BLOCK_IPSET_V6: "IPV6",
    }


def _small_web_acl(
    *, admin_cidrs_v4: list[str], geo_block_countries: Sequence[str] = ()
) -> dict[str, Any]:
    """The resources of a WebAcl alone, in a stack of its own: quicker than the whole
    stack's synth, for settings the default context does not set."""
    from aws_cdk import App, Stack, aws_apigateway, aws_kms, aws_logs
    from aws_cdk.assertions import Template

    from cdk.waf import WebAcl

    stack = Stack(App(), "WafOnly")
    api = aws_apigateway.RestApi(stack, "Api")
    api.root.add_method("GET", aws_apigateway.MockIntegration())
    WebAcl(
        stack,
        "Waf",
        stage=api.deployment_stage,
        key=aws_kms.Key(stack, "Key"),
        log_retention=aws_logs.RetentionDays.ONE_WEEK,
        admin_cidrs_v4=admin_cidrs_v4,
        admin_cidrs_v6=[],
        geo_block_countries=list(geo_block_countries),
        rate_limit=2000,
        max_body_bytes=16384,
    )
    resources: dict[str, Any] = Template.from_stack(stack).to_json()["Resources"]
    return resources


def test_geo_block_rule_appears_when_countries_are_configured():
    # Given a WebACL configured to block two countries
    resources = _small_web_acl(admin_cidrs_v4=["203.0.113.0/24"], geo_block_countries=["KP", "IR"])

    # When it is synthesized
    acl = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::WAFv2::WebACL")

    # Then a geo rule blocks those countries right after the rate rule
    ordered = [rule["Name"] for rule in sorted(acl["Rules"], key=lambda r: r["Priority"])]
    geo = _rule(acl, "geo-block")
    assert ordered.index("geo-block") == ordered.index(names.RATE_RULE) + 1
    assert geo["Statement"]["GeoMatchStatement"]["CountryCodes"] == ["KP", "IR"]
    assert geo["Action"] == {"Block": {}}


def test_the_gateways_own_errors_carry_the_security_headers(synthesized: Synthesized):
    """A throttle's 429, the validator's 400, a WAF 403 or a 504 never reach the
    function that sets the headers on every other answer."""
    from functions.api.middleware.security_headers import SECURITY_HEADERS

    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX", "THROTTLED"}
    for response_type, response in responses.items():
        headers = {
            name.removeprefix("gatewayresponse.header."): value
            for name, value in response["ResponseParameters"].items()
        }
        expected = {n: f"'{v}'" for n, v in SECURITY_HEADERS.items() if "'" not in v}
        if response_type == "THROTTLED":  # and how long to back off
            expected["Retry-After"] = "'1'"
        assert headers == expected
        assert "Strict-Transport-Security" in headers
        body = response["ResponseTemplates"]["application/json"]
        assert body.startswith('{"error":{"code":')
        assert "$context.requestId" in body


def test_what_the_gateway_answers_itself_passes_the_post_deploy_audit(synthesized: Synthesized):
    """The gateway's own answers (DEFAULT_4XX, DEFAULT_5XX: every WAF block, the
    validator's 400, a throttle's 429, a 504) carry no Content-Security-Policy: its
    quoted 'none' does not fit a static header mapping. `babyshield audit --url` meets
    them after every deploy (its admin probes from outside the allowlist and its XSS
    probes are answered by the WAF through them), so it must take them as they are
    sent, JSON with `x-amzn-ErrorType` and every other required header, or the RUNBOOK's
    post-deploy audit of a healthy stack FAILs. And the local edge renders a WAF block
    and the validator's 400 with those same headers, so the audit of `make run` judges
    what AWS sends, not a better answer."""
    from functions.api.middleware.security_headers import SECURITY_HEADERS
    from ops.apigw import rest_event
    from ops.audit import Answer, header_problems
    from ops.local_edge import _blocked, _gateway_body_refusal

    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    not_json = rest_event(
        "POST", "/auth/login", headers=[("Content-Type", "application/json")], body=b"[]"
    )
    local = {
        "a WAF block": _blocked(not_json),
        "the validator's 400": _gateway_body_refusal(not_json),
    }
    for response_type, response in responses.items():
        # What API Gateway sends: the mapped headers, unquoted, its JSON and its error type
        mapped = {}
        for name, value in response["ResponseParameters"].items():
            assert len(value) > 1, (name, value)
            assert value[0] == value[-1] == "'", (name, value)
            mapped[name.removeprefix("gatewayresponse.header.")] = value[1:-1]
        sent = Answer(
            status={"DEFAULT_4XX": 403, "THROTTLED": 429}.get(response_type, 504),
            headers=[
                (name.lower(), value)
                for name, value in {
                    **mapped,
                    "Content-Type": "application/json",
                    "x-amzn-ErrorType": "ForbiddenException",
                }.items()
            ],
            body='{"error":{"code":"request_refused","message":"Forbidden"}}',
        )

        assert header_problems(sent) == {}, response_type
        # Only the CSP is missing: nosniff, DENY framing, HSTS and the rest are sent
        assert set(SECURITY_HEADERS) - set(mapped) == {"Content-Security-Policy"}

        if response_type == "THROTTLED":
            continue  # the local stack has no stage throttle to render it
        for what, answer in local.items():
            assert answer is not None, what
            headers = dict(answer["headers"])
            assert headers.pop("Content-Type") == "application/json", what
            assert headers.pop("x-amzn-ErrorType"), what
            assert headers == mapped, f"the local edge renders {what} unlike {response_type}"


def test_scanner_user_agents_are_patterns_the_waf_accepts_and_that_match(
    synthesized: Synthesized,
):
    import re

    from functions.shared.waf_rules import SUSPICIOUS_USER_AGENTS, USER_AGENT_BRANCHES_PER_PATTERN

    (pattern_set,) = synthesized.resources("AWS::WAFv2::RegexPatternSet").values()
    patterns: list[str] = pattern_set["Properties"]["RegularExpressionList"]
    statement = _rule(_web_acl(synthesized), "suspicious-user-agents")["Statement"][
        "RegexPatternSetReferenceStatement"
    ]
    # WAF refuses capturing groups and long alternations, and a set holds 10 patterns:
    # plain short alternations of lowercase names, matched on the lowercased header.
    assert statement["TextTransformations"] == [{"Priority": 0, "Type": "LOWERCASE"}]
    assert 0 < len(patterns) <= 10
    for pattern in patterns:
        assert re.fullmatch(r"[a-z0-9]+(\|[a-z0-9]+)*", pattern), pattern
        assert pattern.count("|") < USER_AGENT_BRANCHES_PER_PATTERN

    # Together they catch every tool, wherever its name sits in the header...
    def refused(user_agent: str) -> bool:
        return any(re.search(p, user_agent.lower()) for p in patterns)

    for tool in SUSPICIOUS_USER_AGENTS:
        assert refused(f"Mozilla/5.0 (compatible; {tool.upper()}/1.2; +https://example.org)")
    # ...and none of the clients the API serves
    for client in (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0 Safari/537.36",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "BabyShieldPartnerSync/3.1 (+https://partner.example)",
    ):
        assert not refused(client), client


def _parameters_of_a_web_acl(admin_cidrs_v4: list[str]) -> dict[str, str]:
    """The SSM parameters a WebAcl declares for this admin allowlist."""
    return {
        r["Properties"]["Name"]: r["Properties"]["Value"]
        for r in _small_web_acl(admin_cidrs_v4=admin_cidrs_v4).values()
        if r["Type"] == "AWS::SSM::Parameter"
    }


def test_a_deploy_never_resets_the_never_block_list_oncall_keeps_by_hand():
    """On-call adds customers to the never-block list with `aws ssm put-parameter`, no
    deploy (RUNBOOK). Its template value was the admin allowlist, so a deploy that
    changed the allowlist had CloudFormation rewrite the parameter and drop every
    customer added by hand. Its value no longer follows any deploy setting; the admin
    ranges are protected as the allowlist, which the responder reads as well."""
    before = _parameters_of_a_web_acl(["203.0.113.0/24"])
    after = _parameters_of_a_web_acl(["203.0.113.0/24", "198.51.100.7/32"])

    assert before[names.ADMIN_ALLOWLIST_PARAMETER] != after[names.ADMIN_ALLOWLIST_PARAMETER]
    assert before[names.NEVER_BLOCK_PARAMETER] == after[names.NEVER_BLOCK_PARAMETER]


# --- the login's password: opaque to the API, and so to the WAF in front of it ---------

LOGIN_EMAIL = "parent@example.com"
# Passwords a generator may produce, each holding a shape a body rule of the WebACL
# refuses anywhere else: `../` (GenericLFI_BODY), a quote before `#` or `--` (SQLi_BODY,
# SQLiExtendedPatterns_BODY), markup (CrossSiteScripting_BODY and the `xss` rule), a
# URL to an IPv4 host (GenericRFI_BODY).
SHAPED_PASSWORDS = ("pa55../w0rd!", "hunter2'#", "a'--b9", "x<script>9Q", "ftp://10.0.0.7Zq")


def _login_route() -> tuple[str, str]:
    """The one route whose body holds a value the API never inspects, only hashes."""
    (((method, path), opaque),) = OPAQUE_BODY_FIELDS.items()
    assert opaque == {"password"}
    return method, path


def test_a_login_whose_password_the_api_takes_is_not_refused_by_the_waf_in_front_of_it(
    synthesized: Synthesized,
):
    """The API skips the login's password in its attack inspection (OPAQUE_BODY_FIELDS):
    it is only hashed, and a generated password may hold `'#`, `../`, markup or a URL.
    Every request meets the WebACL first, whose managed body rules and own `xss` rule
    read the whole body: a user with such a password gets WAF's 403 for the right
    password and never reaches the API, and each retry is a BLOCK that counts towards
    the waf-blocked alarm and an auto-block of their own address. On the login route
    the WAF skips what the API skips, with or without the stage in the path."""
    acl = _web_acl(synthesized)
    method, path = _login_route()

    refused = {
        (sent_path, password): rule
        for password in SHAPED_PASSWORDS
        for sent_path in (path, f"/{names.API_STAGE}{path}", f"{path}/")
        if (
            rule := blocking_rule(
                acl,
                Request(
                    method, sent_path, json.dumps({"email": LOGIN_EMAIL, "password": password})
                ),
            )
        )
    }

    assert refused == {}, f"the WebACL refuses these sign-ins the API accepts: {refused}"


def test_every_other_request_with_those_shapes_in_its_body_is_still_refused(
    synthesized: Synthesized,
):
    """Only the login's body is spared: the same shapes anywhere else (another route,
    another method on the login path, a path that only starts or ends like it) are
    refused as before, and so are a login's other parts."""
    acl = _web_acl(synthesized)
    method, path = _login_route()
    elsewhere = [
        ("POST", "/me/subscriptions"),
        ("PUT", "/recalls/123"),
        ("GET", path),
        ("PUT", path),
        ("POST", f"{path}x"),
        ("POST", f"{path}/more"),
        ("POST", f"/v2{path}"),
    ]

    passed = [
        (sent_method, sent_path, password)
        for password in SHAPED_PASSWORDS
        for sent_method, sent_path in elsewhere
        if blocking_rule(
            acl,
            Request(
                sent_method, sent_path, json.dumps({"email": LOGIN_EMAIL, "password": password})
            ),
        )
        is None
    ]
    # The login's path and query string are inspected as any other's
    login_attacks = [
        Request(method, f"{path}/<script>alert(1)</script>", "{}"),
        Request(method, path, "{}", query="next=<script>alert(1)</script>"),
    ]

    assert passed == [], f"these bodies no longer meet the WAF's body rules: {passed}"
    assert all(blocking_rule(acl, request) for request in login_attacks)


def test_the_login_email_is_inspected_as_every_other_body_value(synthesized: Synthesized):
    """The managed rules read a body whole, so on the login they are off for all of it:
    the WAF's own SQL injection and XSS match statements read the login's other field,
    `email`, which the API inspects too. An attack sent there is still WAF's BLOCK, the
    evidence an auto-block counts, also when escaped for JSON or sent as a body WAF
    cannot parse."""
    from functions.api.identity.sign_in import LoginRequest

    acl = _web_acl(synthesized)
    method, path = _login_route()
    (opaque,) = OPAQUE_BODY_FIELDS.values()
    inspected_paths = {
        included
        for node in objects_in(acl)
        if "JsonBody" in node.get("FieldToMatch", {})
        for included in node["FieldToMatch"]["JsonBody"]["MatchPattern"]["IncludedPaths"]
    }
    # The password field, whatever its value: only the email is attacked here.
    any_password = json.dumps({"password": "x"})[1:-1]
    attacks = [
        '{"email": "<script>alert(1)</script>@x.io", ' + any_password + "}",
        '{"email": "\' or 1=1--@x.io", ' + any_password + "}",
        '{"email": "\\u003cscript\\u003ealert(1)@x.io", ' + any_password + "}",
        '{"email": "\' or 1=1--@x.io", ' + any_password,  # not JSON: read whole
    ]

    # Every field of the login but the password, and nothing else
    assert inspected_paths == {f"/{name}" for name in LoginRequest.model_fields} - {
        f"/{name}" for name in opaque
    }
    for body in attacks:
        assert blocking_rule(acl, Request(method, path, body)), body


def test_the_web_acl_fits_the_capacity_waf_allows(synthesized: Synthesized):
    """WAF refuses a WebACL past 5,000 capacity units (WCUs), at deploy time; past 1,500
    every request costs more. docs/INFRASTRUCTURE.md gives the estimate."""
    estimate = capacity(_web_acl(synthesized))

    assert estimate <= MAX_WEB_ACL_WCU
