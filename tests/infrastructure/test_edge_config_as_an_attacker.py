"""The deployed edge (WAF WebACL, API Gateway stage) as the synthesized template
declares it, read as an attacker would: bursts past the API function's concurrency,
payloads a JSON body escapes, addresses a client can write, managed groups counting
instead of blocking. Every test reads the session's one synth (`synthesized`).
"""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import unquote

from cdk.waf import BODY_RULES_BUT_LOGIN
from functions.shared import names
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_api_and_waf import _rule, _web_acl


def _alarm(synthesized: Synthesized, alarm_name: str) -> dict[str, Any]:
    alarm: dict[str, Any]
    (alarm,) = [
        a["Properties"]
        for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("AlarmName") == alarm_name
    ]
    return alarm


def _api_function(synthesized: Synthesized) -> dict[str, Any]:
    function: dict[str, Any]
    (function,) = [
        f["Properties"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.api.handler.lambda_handler"
    ]
    return function


def _walk(node: Any) -> list[Any]:
    """Every dict and list inside `node`, itself included."""
    found = [node]
    if isinstance(node, dict):
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


# --- the stage admits bursts the API function cannot run -------------------


def test_stage_burst_never_exceeds_what_the_api_function_can_run(
    synthesized: Synthesized,
):
    """A burst past the API function's reserved concurrency is throttled by Lambda,
    and API Gateway answers a throttled proxy invocation with a 500 (its DEFAULT_5XX),
    never its own 429: one address sending 200 requests at once, well inside the WAF's
    rate rule, turned about 150 of them (and the legitimate requests of that moment)
    into 500s that paged `babyshield-api-5xx`. The gateway's throttle refuses the
    excess with its 429 before Lambda is reached.
    """
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    (settings,) = stage["Properties"]["MethodSettings"]
    burst = settings["ThrottlingBurstLimit"]
    reserved = _api_function(synthesized)["ReservedConcurrentExecutions"]
    api_5xx = _alarm(synthesized, names.ALARM_API_5XX)

    # The alarm that a throttled burst trips: five 500s in 5 minutes page on-call
    assert api_5xx["MetricName"] == "5XXError"
    assert api_5xx["Threshold"] == 5
    # The gateway must not admit more concurrent requests than the function may run
    assert burst <= reserved, (
        f"the stage admits a burst of {burst} requests but the API function runs at most "
        f"{reserved} at once: {burst - reserved} requests of a burst become 500s"
    )


# --- the WAF's own XSS rule reads a JSON body as raw text ------------------

# What WAF does with each text transformation the WebACL uses (AWS WAF developer
# guide, "Text transformation options"); JS_DECODE is the one that reads \uXXXX.
_JS_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")


def _js_decode(text: str) -> str:
    return _JS_ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


_WAF_TRANSFORMS = {
    "NONE": lambda text: text,
    "URL_DECODE": unquote,
    "URL_DECODE_UNI": unquote,
    "HTML_ENTITY_DECODE": html.unescape,
    "JS_DECODE": _js_decode,
    "LOWERCASE": str.lower,
    "COMPRESS_WHITE_SPACE": lambda text: re.sub(r"\s+", " ", text),
}


def _what_the_rule_inspects(statement: dict[str, Any], body: str) -> str:
    """The text an XssMatchStatement on the body hands to its matcher."""
    field = statement["FieldToMatch"]
    if "JsonBody" in field:
        # WAF parses a JSON body and inspects its values, escapes decoded
        text = " ".join(str(value) for value in _walk(json.loads(body)) if isinstance(value, str))
    else:
        text = body
    for transform in sorted(statement["TextTransformations"], key=lambda t: t["Priority"]):
        text = _WAF_TRANSFORMS[transform["Type"]](text)
    return text


def test_waf_xss_rule_sees_markup_a_json_body_escapes(synthesized: Synthesized):
    """Every route that takes a body takes JSON, and JSON may write any character as
    \\u003c: `{"email": "\\u003cscript\\u003e..."}` reached the WAF with no `<` in it,
    and the `xss` rule (URL and HTML entity decoding only) let it through. The API's
    own inspection refuses it, but only a WAF block is evidence for an auto-block: an
    attacker escaping every payload was never blocked. The body is JS-decoded first.
    """
    from functions.api.inspection import find_threat

    payload = "<script>alert(document.cookie)</script>"
    escaped = "".join(f"\\u{ord(c):04x}" if c in "<>/" else c for c in payload)
    body = '{"email": "' + escaped + '", "product": "crib"}'
    # What the API's JSON parser hands the routes, and what its inspection refuses
    assert json.loads(body)["email"] == payload
    assert find_threat(json.loads(body)["email"]) is not None
    assert find_threat(body) is not None  # the API decodes JS escapes itself

    xss = _rule(_web_acl(synthesized), "xss")
    assert xss["Action"] == {"Block": {}}
    body_statements = [
        node["XssMatchStatement"]
        for node in _walk(xss["Statement"])
        if isinstance(node, dict)
        and "XssMatchStatement" in node
        and {"Body", "JsonBody"} & node["XssMatchStatement"]["FieldToMatch"].keys()
    ]
    assert body_statements, "the xss rule does not inspect the body at all"
    seen = [_what_the_rule_inspects(statement, body) for statement in body_statements]
    assert any("<script>" in text.lower() for text in seen), (
        f"the WAF's xss rule inspects {seen!r}: the escaped <script> never reaches its matcher"
    )


# --- What an attacker tries first --------------------------------------------------


def test_no_rule_trusts_an_address_the_client_can_write(synthesized: Synthesized):
    """The admin allowlist, the auto-block sets and the rate rule all key on the
    connection's address: nothing reads X-Forwarded-For or another header, which an
    attacker could set to dodge a block, a rate limit, or to pass the allowlist."""
    acl = _web_acl(synthesized)

    for node in _walk(acl["Rules"]):
        if isinstance(node, dict):
            assert "ForwardedIPConfig" not in node
            assert "IPSetForwardedIPConfig" not in node
    (rate,) = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert "CustomKeys" not in rate["Statement"]["RateBasedStatement"]
    assert "ScopeDownStatement" not in rate["Statement"]["RateBasedStatement"]


def test_managed_groups_are_not_scoped_down_and_what_they_count_is_blocked_after_them(
    synthesized: Synthesized,
):
    """No managed group is scoped down (an attacker could route around a scope). The
    rules set to Count are the fixed size limits, which the WebACL's own size rule
    (Block, oversize counted as a match) replaces; the documented hosting-provider
    list; and the body rules a generated password trips, each of whose labels a rule
    right after its group blocks (labels reach only later rules) on every request but
    a sign-in. Known bad inputs and reputation block as AWS ships them."""
    acl = _web_acl(synthesized)
    ordered = sorted(acl["Rules"], key=lambda r: r["Priority"])
    counted: dict[str, set[str]] = {}
    for position, rule in enumerate(ordered):
        group = rule["Statement"].get("ManagedRuleGroupStatement")
        if group is None:
            continue
        assert rule["OverrideAction"] == {"None": {}}, rule["Name"]
        assert "ScopeDownStatement" not in group, rule["Name"]
        assert "Version" not in group or group["Version"], rule["Name"]
        counted[group["Name"]] = {
            o["Name"] for o in group.get("RuleActionOverrides", []) if "Count" in o["ActionToUse"]
        }
        body_rules = BODY_RULES_BUT_LOGIN.get(group["Name"], {})
        if body_rules:
            after = ordered[position + 1]
            blocked_labels = {
                node["LabelMatchStatement"]["Key"]
                for node in _walk(after["Statement"])
                if isinstance(node, dict) and "LabelMatchStatement" in node
            }
            assert after["Action"] == {"Block": {}}, after["Name"]
            assert blocked_labels == set(body_rules.values()), after["Name"]

    assert counted == {
        "AWSManagedRulesCommonRuleSet": {
            "SizeRestrictions_BODY",
            "SizeRestrictions_QUERYSTRING",
            "SizeRestrictions_URIPATH",
            "GenericLFI_BODY",
            "GenericRFI_BODY",
            "CrossSiteScripting_BODY",
        },
        "AWSManagedRulesKnownBadInputsRuleSet": set(),
        "AWSManagedRulesSQLiRuleSet": {"SQLi_BODY", "SQLiExtendedPatterns_BODY"},
        "AWSManagedRulesAnonymousIpList": {"HostingProviderIPList"},
        "AWSManagedRulesAmazonIpReputationList": set(),
    }
    size = _rule(acl, "size-limits")
    assert size["Action"] == {"Block": {}}
    bodies = [
        s["SizeConstraintStatement"]["FieldToMatch"]["Body"]
        for s in size["Statement"]["OrStatement"]["Statements"]
        if "Body" in s["SizeConstraintStatement"]["FieldToMatch"]
    ]
    assert bodies == [{"OversizeHandling": "MATCH"}]
