"""The local edge: what the WAF does, on this machine, for the rules the platform writes.

In AWS the WebACL sits in front of API Gateway. Locally this wrapper sits in
front of the API handler and applies, in WebACL priority order:

0. the admin allowlist: a path under /admin or /monitoring (after URL decoding,
   path normalisation and lowercasing, as the rule's text transformations do)
   from an address outside the admin allowlist IP sets, read from the moto
   server, is blocked before it reaches the API's own allowlist check;
1. the auto-block IP sets (v4 and v6), read from the moto server on every
   request so a block written by the responder takes effect on the next one,
   answered 403 in the shape API Gateway gives a WAF block (its DEFAULT_4XX
   gateway response, cdk/api.py, with its headers: `x-amzn-ErrorType` and every
   security header but the CSP, which a static header mapping cannot hold);
2. the per-IP rate-based rule (requests per 5-minute window), answering 429
   with the same JSON body and Retry-After as the WebACL's custom response
   (cdk/waf.py);
3. the scanner user-agent and size-limits rules (a path over 2048 bytes, a query
   string over 4096 as the client sent it, a body over `max_body_bytes` as sent),
   answered 403 as a block;
4. API Gateway's request validator, after the WAF as in AWS: a JSON body that is
   not a JSON object gets the gateway's 400 (cdk/api.py);

and writes one WAF-format log record per request to the WAF log group, with
the headers of `names.WAF_REDACTED_HEADERS` (authorization, cookie, x-api-key)
and the query string redacted as the WAF logging config does. The responder's
Logs Insights query reads those records, so the attack flow runs end to end:
flood -> BLOCK records -> alarm -> responder -> IP set -> refused.

The WebACL's other rules (the AWS managed rule groups and the XSS rule) are not
applied here: the API's own attack inspection answers those requests, with its
400 rather than WAF's 403, and no BLOCK record reaches the responder.

WAF sees the HTTP request, not the proxy event API Gateway builds from it, and the
event holds only the decoded query parameters: `ops/local_server.py` hands the
edge the query string as sent (`LocalEdge.handle_as_sent`), and the API still gets
the event alone, as in AWS.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote, urlencode

from functions.api.middleware.security_headers import (
    GATEWAY_RESPONSE_HEADERS,
    apply_security_headers,
)
from functions.shared import names
from functions.shared.waf_rules import (
    ADMIN_ALLOWLIST_RULE,
    ADMIN_PATHS,
    MAX_QUERY_STRING_BYTES,
    MAX_URI_PATH_BYTES,
    RATE_LIMIT_WINDOW_SECONDS,
    user_agent_patterns,
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

RATE_WINDOW_SECONDS = RATE_LIMIT_WINDOW_SECONDS
# The WebACL's custom response for its rate rule (cdk/waf.py: RATE_LIMITED_BODY, and
# a constant Retry-After of one window); a test holds the two equal.
RATE_LIMITED_BODY = {
    "error": {
        "code": "rate_limited",
        "message": f"Too many requests. Retry after {RATE_WINDOW_SECONDS} seconds.",
    }
}
# What API Gateway's DEFAULT_4XX gateway response (cdk/api.py) makes of a WAF
# block without a custom response: WAF_FILTERED, 403, message "Forbidden".
BLOCKED_CODE, BLOCKED_MESSAGE = "request_refused", "Forbidden"
# What the gateway's validator says of a body its model refuses.
GATEWAY_INVALID_BODY_MESSAGE = "Invalid request body"
# API Gateway names the error on every answer it makes itself; the audit (ops/audit.py)
# knows a gateway response by it.
GATEWAY_ERROR_TYPE_HEADER = "x-amzn-ErrorType"
WAF_BLOCK_ERROR_TYPE = "ForbiddenException"
INVALID_BODY_ERROR_TYPE = "BadRequestException"
REDACTED_HEADERS = frozenset(names.WAF_REDACTED_HEADERS)
IPSET_SCOPE = "REGIONAL"


ADMIN_ALLOWLIST_SETS = {4: names.ADMIN_ALLOWLIST_IPSET_V4, 6: names.ADMIN_ALLOWLIST_IPSET_V6}
AUTO_BLOCK_SETS = {4: names.AUTO_BLOCK_IPSET_V4, 6: names.AUTO_BLOCK_IPSET_V6}


@dataclass(frozen=True)
class EdgeIpSets:
    """The WebACL's IP sets on the moto server, by IP version: the admin allowlist
    (which CDK fills) and the auto-block sets (which the responder fills)."""

    admin_allowlist: dict[int, str]
    auto_block: dict[int, str]

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> EdgeIpSets:
        """From what `ops.waf.ensure_local_resources` returns (the local stack's env)."""
        return cls(
            admin_allowlist={v: env[f"ADMIN_ALLOWLIST_IPSET_V{v}_ID"] for v in (4, 6)},
            auto_block={v: env[f"AUTO_BLOCK_IPSET_V{v}_ID"] for v in (4, 6)},
        )


@dataclass
class RateRule:
    """A sliding 5-minute count per client address, as WAF's rate-based rule keeps."""

    limit: int
    window_seconds: int = RATE_WINDOW_SECONDS
    _seen: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def over_limit(self, address: str, now: float) -> float | None:
        """Record a request; return seconds until the address is under the limit again."""
        with self._lock:
            # Only the newest limit+1 requests decide, so a flood costs bounded memory.
            seen = self._seen.setdefault(address, deque(maxlen=self.limit + 1))
            cutoff = now - self.window_seconds
            while seen and seen[0] <= cutoff:
                seen.popleft()
            seen.append(now)
            if len(seen) <= self.limit:
                return None
            # Under the limit again once the oldest of the newest limit+1 leaves the window.
            return seen[0] - cutoff


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    return apply_security_headers(
        {
            "statusCode": status,
            "headers": {"Content-Type": "application/json", **headers},
            "body": json.dumps(body, separators=(",", ":")),
            "isBase64Encoded": False,
        }
    )


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _client(address: str) -> tuple[str, IpAddress | None]:
    """The client's address in one spelling, and parsed (None if it does not parse): an
    IPv4 client as its IPv4 address also when it arrives IPv4-mapped (a dual-stack
    socket's spelling), as the registry and the API read it: one IP-set check, one
    rate-rule budget per client."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped), ip.ipv4_mapped
    return address, ip


def _gateway_refusal(
    event: dict[str, Any], status: int, message: str, error_type: str
) -> dict[str, Any]:
    """An answer as API Gateway's DEFAULT_4XX gateway response renders it: its body
    template, its header mappings and the error type the gateway adds, not the
    function's headers (apply_security_headers), which such an answer never gets."""
    refusal = {
        "code": BLOCKED_CODE,
        "message": message,
        "correlation_id": event["requestContext"]["requestId"],
    }
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json",
            GATEWAY_ERROR_TYPE_HEADER: error_type,
            **GATEWAY_RESPONSE_HEADERS,
        },
        "body": json.dumps({"error": refusal}, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _blocked(event: dict[str, Any]) -> dict[str, Any]:
    """A WAF block as the gateway response renders it."""
    return _gateway_refusal(event, 403, BLOCKED_MESSAGE, WAF_BLOCK_ERROR_TYPE)


# The scanner user-agent rule's patterns as one expression, compiled once: it runs on
# every request the local stack (and the HTTP benchmark's servers) serves.
_SCANNER_AGENT = re.compile("|".join(user_agent_patterns()))


def _transformed_path(path: str) -> str:
    """The path as the admin-allowlist rule matches it: URL_DECODE, NORMALIZE_PATH
    (repeated slashes, `.` segments, and `..` segments not at the beginning) and
    LOWERCASE, in that order."""
    segments: list[str] = []
    for segment in unquote(path).split("/"):
        if segment in ("", "."):
            continue
        if segment == ".." and segments and segments[-1] != "..":
            segments.pop()
            continue
        segments.append(segment)
    return ("/" + "/".join(segments)).lower()


def _is_admin_path(path: str) -> bool:
    # The execute-api URL's stage prefix is not in a Lambda event's path: the rule's
    # stage-prefixed spellings (cdk/waf.py) have nothing to match here.
    return _transformed_path(path).startswith(ADMIN_PATHS)


def sent_body(event: dict[str, Any]) -> bytes:
    """The body's bytes as the client sent them (what WAF's body size counts): the
    event carries them as text, or base64 when they are not UTF-8 (ops/apigw.py)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode()


# What a query may carry unescaped (RFC 3986) besides letters, digits and `-._~`,
# which quote_plus() never escapes: not the delimiters `&` `=` `+`, nor `;`, which
# API Gateway splits REST query strings at too (ops/apigw.py).
_QUERY_SAFE = "!$'()*,/:?@"


def shortest_query(event: dict[str, Any]) -> str:
    """A short spelling of the event's query parameters, for callers that build an
    event without the request it came from (tests, tools), whose spelling as sent is
    lost: only what must be escaped is, and a space is `+`."""
    parameters = event.get("multiValueQueryStringParameters") or {}
    return urlencode(parameters, doseq=True, safe=_QUERY_SAFE, quote_via=quote_plus)


def _content_rule(event: dict[str, Any], *, query_string: str, max_body_bytes: int) -> str | None:
    """The WebACL rule after the rate rule that blocks this request, if any: a
    scanner's user agent, then the size-limits rule (cdk/waf.py, from
    functions/shared/waf_rules.py). That rule measures each part as sent (text
    transformation NONE): the path, the query string (`query_string`, not the
    decoded parameters of the event) and the body, whose limit is the API's
    `max_body_bytes`. WAF is sent at least that much of a body (cdk/waf.py,
    inspection_limit) and treats a larger one as a match (oversize handling MATCH),
    so a body over the limit is blocked here too, whatever its length."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if _SCANNER_AGENT.search(headers.get("user-agent", "").lower()):
        return "suspicious-user-agents"
    path = event.get("path") or ""
    if (
        len(path.encode()) > MAX_URI_PATH_BYTES
        or len(query_string.encode()) > MAX_QUERY_STRING_BYTES
        or len(sent_body(event)) > max_body_bytes
    ):
        return "size-limits"
    return None


def _gateway_body_refusal(event: dict[str, Any]) -> dict[str, Any] | None:
    """API Gateway's request validator (cdk/api.py): a JSON body must be a JSON object,
    or the gateway answers 400 itself, in its error shape, and the function never runs."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = event.get("body")
    if media_type != "application/json" or not body:
        return None
    try:
        text = base64.b64decode(body) if event.get("isBase64Encoded") else body
        document = json.loads(text)
    except (ValueError, TypeError):
        document = None
    if isinstance(document, dict):
        return None
    return _gateway_refusal(event, 400, GATEWAY_INVALID_BODY_MESSAGE, INVALID_BODY_ERROR_TYPE)


class LocalEdge:
    """Wraps the API handler with the platform's own WAF rules and WAF logging."""

    def __init__(
        self,
        handler: Handler,
        *,
        rate_limit: int,
        ip_sets: EdgeIpSets,
        aws_client: Callable[[str], Any],
        log_group: str = names.WAF_LOG_GROUP,
        log_stream: str = "local-edge",
        max_body_bytes: int | None = None,
    ):
        """`max_body_bytes`: the size rule's body limit, which CDK sets from the same
        value as the API's (cdk/config.py); by default the API's setting."""
        if max_body_bytes is None:
            from functions.shared.settings import get_settings

            max_body_bytes = get_settings().max_body_bytes
        self._max_body_bytes = max_body_bytes
        self._handler = handler
        self._rate = RateRule(limit=rate_limit)
        self._ip_sets = ip_sets
        self._wafv2 = aws_client("wafv2")
        self._logs = aws_client("logs")
        self._log_group = log_group
        self._log_stream = log_stream
        self._log_lock = threading.Lock()

    def _in_ip_set(
        self,
        ip: IpAddress,
        set_names: Mapping[int, str],
        set_ids: Mapping[int, str],
    ) -> bool:
        """Whether `ip` is in the set of its version, as the moto server holds it now."""
        ip_set = self._wafv2.get_ip_set(
            Name=set_names[ip.version], Scope=IPSET_SCOPE, Id=set_ids[ip.version]
        )
        addresses = ip_set["IPSet"]["Addresses"]
        return any(ip in ipaddress.ip_network(a, strict=False) for a in addresses)

    def _admin_refused(self, event: dict[str, Any], ip: IpAddress | None) -> bool:
        """Rule 0: an admin path from outside the admin allowlist IP sets."""
        if not _is_admin_path(event.get("path") or ""):
            return False
        if ip is None:
            return True
        return not self._in_ip_set(ip, ADMIN_ALLOWLIST_SETS, self._ip_sets.admin_allowlist)

    def _auto_blocked(self, ip: IpAddress | None) -> str | None:
        if ip is None:
            return None
        if self._in_ip_set(ip, AUTO_BLOCK_SETS, self._ip_sets.auto_block):
            return names.AUTO_BLOCK_RULE_V4 if ip.version == 4 else names.AUTO_BLOCK_RULE_V6
        return None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """An event without the request it came from: its query string is measured as
        `shortest_query` spells it."""
        return self.handle_as_sent(event, context, query_string=shortest_query(event))

    def handle_as_sent(
        self, event: dict[str, Any], context: Any, *, query_string: str
    ) -> dict[str, Any]:
        """One request: `event` as API Gateway builds it, `query_string` as the client
        sent it (all after the first `?`), which WAF's size rule measures. The API
        gets `event` alone."""
        address, ip = _client(event["requestContext"]["identity"]["sourceIp"])
        now = time.time()
        if self._admin_refused(event, ip):
            self._log(event, now, action="BLOCK", rule=ADMIN_ALLOWLIST_RULE, rule_type="REGULAR")
            return _blocked(event)
        rule = self._auto_blocked(ip)
        if rule is not None:
            self._log(event, now, action="BLOCK", rule=rule, rule_type="REGULAR")
            return _blocked(event)
        if self._rate.over_limit(address, now) is not None:
            # WAF's Retry-After is a constant: it does not know when the rate drops.
            response = _json_response(
                429, RATE_LIMITED_BODY, {"Retry-After": str(RATE_WINDOW_SECONDS)}
            )
            self._log(event, now, action="BLOCK", rule=names.RATE_RULE, rule_type="RATE_BASED")
            return response
        rule = _content_rule(event, query_string=query_string, max_body_bytes=self._max_body_bytes)
        if rule is not None:
            self._log(event, now, action="BLOCK", rule=rule, rule_type="REGULAR")
            return _blocked(event)
        self._log(event, now, action="ALLOW", rule="Default_Action", rule_type="REGULAR")
        invalid = _gateway_body_refusal(event)
        if invalid is not None:
            return invalid
        return self._handler(event, context)

    def _log(
        self, event: dict[str, Any], now: float, *, action: str, rule: str, rule_type: str
    ) -> None:
        headers = [
            {"name": name, "value": "REDACTED" if name.lower() in REDACTED_HEADERS else value}
            for name, value in (event.get("headers") or {}).items()
        ]
        # Redacted as the deployed logging configuration redacts it (cdk/waf.py).
        query = "REDACTED" if event.get("queryStringParameters") else ""
        record = {
            "timestamp": int(now * 1000),
            "formatVersion": 1,
            "webaclId": f"local/{names.WEB_ACL}",
            "terminatingRuleId": rule,
            "terminatingRuleType": rule_type,
            "action": action,
            "httpSourceName": "APIGW",
            "httpSourceId": "local",
            "ruleGroupList": [],
            "rateBasedRuleList": [],
            "nonTerminatingMatchingRules": [],
            "httpRequest": {
                "clientIp": event["requestContext"]["identity"]["sourceIp"],
                "country": "-",
                "headers": headers,
                "uri": event.get("path", "/"),
                "args": query,
                "httpVersion": "HTTP/1.1",
                "httpMethod": event.get("httpMethod", "GET"),
                "requestId": event["requestContext"].get("requestId") or str(uuid.uuid4()),
            },
        }
        with self._log_lock:
            self._logs.put_log_events(
                logGroupName=self._log_group,
                logStreamName=self._log_stream,
                logEvents=[{"timestamp": record["timestamp"], "message": json.dumps(record)}],
            )
