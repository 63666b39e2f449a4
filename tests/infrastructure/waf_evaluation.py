"""The synthesized WebACL evaluated for one request the way AWS WAF evaluates it: rules
in priority order, the first Block ends it, a managed group's rule set to Count only
labels the request, and a label is seen only by rules after the one that added it
(AWS WAF developer guide, "Setting rule priority", "Label match rule statement").

What AWS runs but does not publish is modelled: the managed groups' body rules match
the shapes their documentation names (`MANAGED_BODY_RULES`), and WAF's SQLi and XSS
detectors match the classic shapes of each. A statement this model does not know
raises, so a new kind of rule is never silently read as "no match".

`capacity()` estimates the WebACL's capacity units (WCUs) from the documented cost
of each statement (AWS WAF developer guide, "Rule statements list" and each
statement's page; the managed groups' capacities from their listings).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

# A WebACL may use up to 5,000 WCUs; past 1,500 each request costs more (AWS WAF
# pricing; "Web ACL capacity units (WCUs) in AWS WAF").
MAX_WEB_ACL_WCU = 5000
INCLUDED_WEB_ACL_WCU = 1500

_SQLI = re.compile(r"'\s*(#|--|;|\bor\b|\band\b|\bunion\b)|\bunion\s+select\b", re.IGNORECASE)
_XSS = re.compile(r"<\s*script|javascript:|\bon(error|load)\s*=", re.IGNORECASE)
_RFI = re.compile(r"(https?|ftps?|file)://\d{1,3}(\.\d{1,3}){3}", re.IGNORECASE)


def _lfi(text: str) -> bool:
    return "../" in text or "..\\" in text


# (group, rule) -> (the label the rule adds, whether a request's body has its shape).
# Rules and labels: AWS WAF developer guide, "Baseline rule groups" (core rule set)
# and "Use-case specific rule groups" (SQL database).
MANAGED_BODY_RULES: dict[tuple[str, str], tuple[str, Callable[[str], bool]]] = {
    ("AWSManagedRulesCommonRuleSet", "GenericLFI_BODY"): (
        "awswaf:managed:aws:core-rule-set:GenericLFI_Body",
        _lfi,
    ),
    ("AWSManagedRulesCommonRuleSet", "GenericRFI_BODY"): (
        "awswaf:managed:aws:core-rule-set:GenericRFI_Body",
        lambda body: bool(_RFI.search(body)),
    ),
    ("AWSManagedRulesCommonRuleSet", "CrossSiteScripting_BODY"): (
        "awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body",
        lambda body: bool(_XSS.search(html.unescape(unquote(body)))),
    ),
    ("AWSManagedRulesSQLiRuleSet", "SQLi_BODY"): (
        "awswaf:managed:aws:sql-database:SQLi_Body",
        lambda body: bool(_SQLI.search(unquote(body))),
    ),
    ("AWSManagedRulesSQLiRuleSet", "SQLiExtendedPatterns_BODY"): (
        "awswaf:managed:aws:sql-database:SQLiExtendedPatterns_Body",
        lambda body: bool(_SQLI.search(unquote(body))),
    ),
}

_JS_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")


def _normalize_path(text: str) -> str:
    """NORMALIZE_PATH: multiple slashes, `.` and the `..` that are not at the start go."""
    segments: list[str] = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == ".." and segments and segments[-1] != "..":
            segments.pop()
            continue
        segments.append(segment)
    normalized = ("/" if text.startswith("/") else "") + "/".join(segments)
    return normalized + "/" if text.endswith("/") and segments else normalized


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "NONE": lambda text: text,
    "URL_DECODE": unquote,
    "HTML_ENTITY_DECODE": html.unescape,
    "JS_DECODE": lambda text: _JS_ESCAPE.sub(
        lambda m: chr(int(m.group(1) or m.group(2), 16)), text
    ),
    "LOWERCASE": str.lower,
    "NORMALIZE_PATH": _normalize_path,
}


@dataclass(frozen=True)
class Request:
    """A request from an address in no IP set, a browser's user agent, under the rate."""

    method: str
    path: str
    body: str = ""
    query: str = ""


@dataclass
class _Evaluation:
    request: Request
    labels: set[str] = field(default_factory=set)


def objects_in(node: Any) -> list[dict[str, Any]]:
    """Every JSON object inside `node`, itself included."""
    if isinstance(node, dict):
        return [node, *(found for value in node.values() for found in objects_in(value))]
    if isinstance(node, list):
        return [found for value in node for found in objects_in(value)]
    return []


def _transformed(statement: dict[str, Any], text: str) -> str:
    for transform in sorted(statement["TextTransformations"], key=lambda t: t["Priority"]):
        text = TRANSFORMS[transform["Type"]](text)
    return text


def _json_pointer(document: Any, pointer: str) -> Any:
    for token in pointer.split("/")[1:]:
        if not isinstance(document, dict) or token not in document:
            return None
        document = document[token]
    return document


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _inspects(spec: dict[str, Any], request: Request, test: Callable[[str], bool]) -> bool:
    """Whether `test` holds for the request component `spec` names, transformed as it says."""
    field_to_match = spec["FieldToMatch"]
    if "JsonBody" in field_to_match:
        json_body = field_to_match["JsonBody"]
        assert json_body["MatchScope"] == "VALUE", json_body
        try:
            document = json.loads(request.body)
        except ValueError:
            fallback = json_body["InvalidFallbackBehavior"]
            if fallback != "EVALUATE_AS_STRING":
                return bool(fallback == "MATCH")
            texts = [request.body]
        else:
            pattern = json_body["MatchPattern"]
            texts = (
                _strings(document)
                if "All" in pattern
                else [
                    text
                    for pointer in pattern["IncludedPaths"]
                    for text in _strings(_json_pointer(document, pointer))
                ]
            )
    else:
        components = {
            "UriPath": request.path,
            "Method": request.method,
            "QueryString": request.query,
            "Body": request.body,
        }
        (name,) = field_to_match.keys()
        assert name in components, f"the model does not read {field_to_match}"
        texts = [components[name]]
    return any(test(_transformed(spec, text)) for text in texts)


def matches(statement: dict[str, Any], evaluation: _Evaluation) -> bool:
    """Whether `statement` matches the request, with the labels added so far."""
    request = evaluation.request
    if "AndStatement" in statement:
        return all(matches(s, evaluation) for s in statement["AndStatement"]["Statements"])
    if "OrStatement" in statement:
        return any(matches(s, evaluation) for s in statement["OrStatement"]["Statements"])
    if "NotStatement" in statement:
        return not matches(statement["NotStatement"]["Statement"], evaluation)
    if "LabelMatchStatement" in statement:
        label = statement["LabelMatchStatement"]
        assert label["Scope"] == "LABEL", label
        return label["Key"] in evaluation.labels
    if "ByteMatchStatement" in statement:
        byte = statement["ByteMatchStatement"]
        wanted = byte["SearchString"]
        positional: dict[str, Callable[[str], bool]] = {
            "EXACTLY": lambda text: text == wanted,
            "STARTS_WITH": lambda text: text.startswith(wanted),
            "ENDS_WITH": lambda text: text.endswith(wanted),
            "CONTAINS": lambda text: wanted in text,
        }
        return _inspects(byte, request, positional[byte["PositionalConstraint"]])
    if "RegexMatchStatement" in statement:
        regex = statement["RegexMatchStatement"]
        return _inspects(regex, request, lambda text: bool(re.search(regex["RegexString"], text)))
    if "XssMatchStatement" in statement:
        return _inspects(
            statement["XssMatchStatement"], request, lambda text: bool(_XSS.search(text))
        )
    if "SqliMatchStatement" in statement:
        return _inspects(
            statement["SqliMatchStatement"], request, lambda text: bool(_SQLI.search(text))
        )
    if "SizeConstraintStatement" in statement:
        size = statement["SizeConstraintStatement"]
        assert size["ComparisonOperator"] == "GT", size
        return _inspects(size, request, lambda text: len(text.encode()) > size["Size"])
    # The request comes from an address in no IP set, from no blocked country, with a
    # browser's user agent (not a scanner's), under the rate limit.
    if {
        "IPSetReferenceStatement",
        "GeoMatchStatement",
        "RegexPatternSetReferenceStatement",
        "RateBasedStatement",
    } & statement.keys():
        return False
    raise AssertionError(f"the model does not evaluate {statement}")


def blocking_rule(acl: dict[str, Any], request: Request) -> str | None:
    """The name of the rule that blocks `request`, or None when the WebACL allows it."""
    evaluation = _Evaluation(request)
    for rule in sorted(acl["Rules"], key=lambda r: r["Priority"]):
        statement = rule["Statement"]
        group = statement.get("ManagedRuleGroupStatement")
        if group is not None:
            counted = {
                o["Name"]
                for o in group.get("RuleActionOverrides") or ()
                if "Count" in o["ActionToUse"]
            }
            for (group_name, rule_name), (label, shape) in MANAGED_BODY_RULES.items():
                if group_name == group["Name"] and shape(request.body):
                    evaluation.labels.add(label)
                    if rule_name not in counted:
                        return str(rule["Name"])
            continue
        if matches(statement, evaluation):
            action = rule["Action"]
            if "Block" in action:
                return str(rule["Name"])
            assert "Count" in action, rule["Name"]
    return None


# --- capacity ---------------------------------------------------------------------------

MANAGED_GROUP_WCU = {
    "AWSManagedRulesCommonRuleSet": 700,
    "AWSManagedRulesKnownBadInputsRuleSet": 200,
    "AWSManagedRulesSQLiRuleSet": 200,
    "AWSManagedRulesAnonymousIpList": 50,
    "AWSManagedRulesAmazonIpReputationList": 25,
}
_BYTE_MATCH_WCU = {"EXACTLY": 2, "STARTS_WITH": 2, "ENDS_WITH": 2, "CONTAINS": 10}


def _inspection_wcu(base: int, inspecting: dict[str, Any]) -> int:
    """A match statement's cost: its base, doubled on a JSON body, 10 a transformation."""
    field_to_match = inspecting["FieldToMatch"]
    cost = base * 2 if "JsonBody" in field_to_match else base
    cost += 10 if "AllQueryArguments" in field_to_match else 0
    return cost + 10 * sum(
        1 for t in inspecting.get("TextTransformations", ()) if t["Type"] != "NONE"
    )


def statement_wcu(statement: dict[str, Any]) -> int:
    for logical in ("AndStatement", "OrStatement"):
        if logical in statement:
            return sum(statement_wcu(s) for s in statement[logical]["Statements"])
    if "NotStatement" in statement:
        return statement_wcu(statement["NotStatement"]["Statement"])
    if "ManagedRuleGroupStatement" in statement:
        return MANAGED_GROUP_WCU[statement["ManagedRuleGroupStatement"]["Name"]]
    if "RateBasedStatement" in statement:
        return 2
    if {"LabelMatchStatement", "GeoMatchStatement", "IPSetReferenceStatement"} & statement.keys():
        return 1
    if "ByteMatchStatement" in statement:
        byte = statement["ByteMatchStatement"]
        return _inspection_wcu(_BYTE_MATCH_WCU[byte["PositionalConstraint"]], byte)
    bases = {
        "RegexMatchStatement": 3,
        "RegexPatternSetReferenceStatement": 25,
        "SizeConstraintStatement": 1,
        "SqliMatchStatement": 30
        if statement.get("SqliMatchStatement", {}).get("SensitivityLevel") == "HIGH"
        else 20,
        "XssMatchStatement": 40,
    }
    for kind, base in bases.items():
        if kind in statement:
            return _inspection_wcu(base, statement[kind])
    raise AssertionError(f"no documented capacity for {statement}")


def capacity(acl: dict[str, Any]) -> int:
    """The WebACL's estimated WCUs: its statements, and 1 for every 5 labels its rules add."""
    labels = sum(len(rule.get("RuleLabels") or ()) for rule in acl["Rules"])
    return sum(statement_wcu(rule["Statement"]) for rule in acl["Rules"]) + -(-labels // 5)
