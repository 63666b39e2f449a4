"""`babyshield audit`: the security audit of a running deployment, local or in AWS.

One line per check with PASS, FAIL or SKIP and the reason; exit code 1 on any
FAIL, and a check whose requests were rate-limited before they reached the API
was not performed, so it FAILs too; `--json` for machines. Every request is
read-only (GET, or a POST that the edge must refuse before it reaches a route),
the request count is bounded and requests are paced, so the audit is safe
against production.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ops.audit_checks import FAIL, PASS, SKIP, Check
from ops.console import CommandError, UsageError, is_http_url, print_json

if TYPE_CHECKING:
    from functions.shared.settings import IPNetwork

# The headers every answer must carry, with their exact values where the value
# is the point (functions/api/middleware/security_headers.py is the source).
REQUIRED_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains; preload",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
    "x-xss-protection": "0",
    "permissions-policy": None,  # present; the exact list may grow
}
# API Gateway names the error on every answer it makes itself (a gateway response: a
# WAF block, the validator's 400, its throttle's 429, a timeout's 504); the function's
# answers never carry it.
GATEWAY_ERROR_TYPE = "x-amzn-errortype"
# What a gateway response cannot carry: cdk/api.py sets its headers as static mappings,
# which cannot hold the CSP's quoted 'none'. Such an answer is short JSON sent with
# nosniff and X-Frame-Options DENY, so a browser neither renders nor frames it.
NOT_ON_GATEWAY_ANSWERS = frozenset({"content-security-policy"})

# Text that means a database or runtime error leaked into a response.
LEAK_MARKERS = (
    "traceback",
    "syntax error",
    "psycopg",
    "sqlstate",
    "pg_catalog",
    'file "/',
    "unterminated quoted string",
)

SQLI_PROBES = (
    "' OR '1'='1",
    "1; DROP TABLE recalls--",
    "' UNION SELECT password_hash FROM users--",
)
XSS_PROBES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')

# Every request names itself: the WAF's core rule set (NoUserAgent_HEADER, cdk/waf.py)
# blocks a request without a User-Agent, and http.client sends none of its own.
AUDIT_USER_AGENT = "babyshield-audit/1"

MAX_RATE_PROBES = 300
PACE_SECONDS = 0.005
# Beyond this a socket timeout overflows; no audit request should wait an hour.
MAX_TIMEOUT_SECONDS = 3600.0


@dataclass
class Answer:
    status: int
    # Every header field as received, names lowercased: a header sent twice is two
    # entries, since browsers obey the first (HSTS) or refuse to pick (X-Frame-Options).
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        return next(iter(self.values(name)), None)

    def values(self, name: str) -> list[str]:
        """Every value of a header, in the order received."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


@dataclass
class Target:
    """A deployment under audit and how to talk to it."""

    url: str
    api_key: str | None = None
    token: str | None = None
    timeout: float = 10.0
    # An address on the admin allowlist, forged in X-Forwarded-For: a proxy header the
    # API trusted would open /admin to anyone who names it (None: from the settings).
    allowlisted: str | None = None
    requests_sent: int = field(default=0)
    # Every answer, as "METHOD path" and the answer: each must carry the headers.
    answers: list[tuple[str, Answer]] = field(default_factory=list, repr=False)

    @property
    def is_https(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, parts.port or 443, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(host, parts.port or 80, timeout=self.timeout)
        base = parts.path.rstrip("/")
        self.requests_sent += 1
        time.sleep(PACE_SECONDS)
        try:
            sent = {"User-Agent": AUDIT_USER_AGENT, **(headers or {})}
            connection.request(method, base + path, body=body, headers=sent)
            response = connection.getresponse()
            payload = response.read().decode("utf-8", errors="replace")
            answer = Answer(
                status=response.status,
                headers=[(k.lower(), v) for k, v in response.getheaders()],
                body=payload,
            )
            self.answers.append((f"{method} {path.split('?', 1)[0]}", answer))
            return answer
        finally:
            connection.close()


def leaked(answer: Answer) -> str | None:
    lowered = answer.body.lower()
    return next((marker for marker in LEAK_MARKERS if marker in lowered), None)


def rate_limited(answers: Iterable[Answer]) -> str | None:
    """Why a check is not performed when any of its requests was answered 429.

    A 429 comes from the edge's rate rule or the API key's limit, before the request
    reaches the code under test: it says nothing about that code, and counting it as
    a refusal would PASS a check that never ran (a second audit within the window).
    """
    limited = [answer for answer in answers if answer.status == 429]
    if not limited:
        return None
    return (
        "not performed: rate-limited (429) before the probe reached the API; "
        f"{_wait(limited[-1])} and run again"
    )


def redirected(answers: Iterable[Answer]) -> str | None:
    """Why a check is not performed when any of its requests was answered with a redirect.

    A 3xx sends the client elsewhere (an http->https hop, a login page, another host in
    front of the API): the request never reached the code under test, and the audit
    follows no redirect, so a PASS would claim a test that was not made.
    """
    moved = [answer for answer in answers if 300 <= answer.status < 400]
    if not moved:
        return None
    where = moved[0].header("location")
    to = f" to {where}" if where else ""
    return (
        f"not performed: answered with a redirect ({moved[0].status}{to}), so the request "
        "never reached the API; audit the API's own URL"
    )


def _wait(answer: Answer) -> str:
    retry_after = answer.header("retry-after")
    return f"wait {retry_after} s (Retry-After)" if retry_after else "wait for the window"


def check_security_headers(target: Target) -> Iterator[Check]:
    answers = {
        "GET /health": target.request("GET", "/health"),
        "GET (unknown route)": target.request("GET", "/audit-no-such-route"),
    }
    limited = rate_limited(answers.values()) or redirected(answers.values())
    if limited:
        yield Check("security_headers", FAIL, limited)
        yield Check("no_server_banner", FAIL, limited)
        return
    problems = [
        f"{label}: {name} {problem}"
        for label, answer in answers.items()
        for name, problem in header_problems(answer).items()
    ]
    if problems:
        yield Check("security_headers", FAIL, "; ".join(problems))
    else:
        judged = " and ".join(f"{label} ({answer.status})" for label, answer in answers.items())
        yield Check("security_headers", PASS, f"each required header once on {judged}")
    banners = [
        f"{name}: {answer.header(name)}"
        for answer in answers.values()
        for name in ("server", "x-powered-by")
        if answer.header(name)
    ]
    if banners:
        yield Check("no_server_banner", FAIL, "; ".join(sorted(set(banners))))
    else:
        yield Check("no_server_banner", PASS, "no Server or X-Powered-By header")


def made_by_the_gateway(answer: Answer) -> bool:
    """A JSON answer API Gateway made itself, which carries every required header but
    those of NOT_ON_GATEWAY_ANSWERS. One in another media type could be rendered, so
    it needs them all."""
    media_type = (answer.header("content-type") or "").split(";", 1)[0].strip().lower()
    return answer.header(GATEWAY_ERROR_TYPE) is not None and media_type == "application/json"


def header_problems(answer: Answer) -> dict[str, str]:
    """Each required header the answer lacks, sends more than once, or sends with
    another value than required, and what is wrong with it. A header the gateway's own
    answers cannot carry may be absent from them, and is judged when present."""
    problems = {}
    optional = NOT_ON_GATEWAY_ANSWERS if made_by_the_gateway(answer) else frozenset()
    for name, expected in REQUIRED_HEADERS.items():
        values = answer.values(name)
        if not values:
            if name not in optional:
                problems[name] = "missing"
        elif len(values) > 1:
            # Not judged by either value: browsers obey the first STS field (RFC 6797
            # 8.1), and conflicting X-Frame-Options values allow framing.
            problems[name] = _sent_times(values)
        elif expected is not None and values[0] != expected:
            problems[name] = f"is {values[0]!r}"
    return problems


def _sent_times(values: list[str]) -> str:
    return f"sent {len(values)} times ({', '.join(repr(v) for v in values)})"


def check_headers_on_every_answer(target: Target) -> Iterator[Check]:
    """Every answer the audit received, refusals included (a 401 or 400 a browser
    renders needs the headers as much as a 200), carried each required header once;
    the CSP is not required on the JSON answers API Gateway makes itself, and the
    detail says how many there were."""
    if target.answers and all(answer.status == 429 for _, answer in target.answers):
        # Only the rate limit answered: no answer of the API itself was seen.
        yield Check(
            "security_headers_on_every_answer",
            FAIL,
            rate_limited(answer for _, answer in target.answers) or "not performed",
        )
        return
    lacking: dict[str, set[str]] = {}
    gateways = 0
    for label, answer in target.answers:
        gateway = made_by_the_gateway(answer)
        gateways += gateway
        wrong = {
            f"{name} sent {count} times" if (count := len(answer.values(name))) > 1 else name
            for name in header_problems(answer)
        }
        if wrong:
            made = ", API Gateway's own" if gateway else ""
            lacking.setdefault(f"{label} ({answer.status}{made})", set()).update(wrong)
    if lacking:
        shown = [f"{where}: {', '.join(sorted(names))}" for where, names in lacking.items()]
        more = f"; and {len(shown) - 5} more" if len(shown) > 5 else ""
        yield Check(
            "security_headers_on_every_answer",
            FAIL,
            f"{len(lacking)} kind(s) of answer lack or repeat required headers: "
            + "; ".join(shown[:5])
            + more,
        )
    else:
        own = (
            f"; {gateways} made by API Gateway itself (x-amzn-ErrorType), where the "
            "Content-Security-Policy is not required: its static header mappings cannot "
            "hold it, and that short JSON is sent with nosniff and DENY"
            if gateways
            else ""
        )
        yield Check(
            "security_headers_on_every_answer",
            PASS,
            f"all {len(target.answers)} answers carried the required headers{own}",
        )


def _allowlisted_address(target: Target) -> str | None:
    if target.allowlisted:
        return target.allowlisted
    from functions.shared.settings import get_settings

    return _an_address_in(get_settings().admin_allowed_cidrs)


def _an_address_in(networks: tuple[IPNetwork, ...]) -> str | None:
    """A host address of the first network (the address itself for a /32 or /128)."""
    return str(next(iter(networks[0].hosts()), networks[0].network_address)) if networks else None


def check_admin_protection(target: Target) -> Iterator[Check]:
    forged = _allowlisted_address(target)
    probes: list[tuple[str, str, dict[str, str]]] = [
        ("admin_requires_allowlist", "/admin/users", {}),
        ("monitoring_requires_allowlist", "/monitoring", {}),
    ]
    if forged is None:
        yield Check(
            "admin_ignores_forwarded_for",
            SKIP,
            "not performed: no address on the admin allowlist is known here to forge "
            "(set ADMIN_ALLOWED_CIDRS, or audit with AWS access to read it)",
        )
    else:
        probes.append(
            (
                "admin_ignores_forwarded_for",
                "/admin/users",
                {"X-Forwarded-For": forged, "X-Real-IP": forged, "Forwarded": f'for="{forged}"'},
            )
        )
    plain: dict[str, int] = {}  # each path's status without the forged headers
    for name, path, headers in probes:
        answer = target.request("GET", path, headers=headers)
        limited = rate_limited([answer])
        if not headers:
            plain[path] = answer.status
        if limited:
            yield Check(name, FAIL, limited)
        elif answer.status == 403:
            forging = f" naming {forged}, on the allowlist," if headers else ""
            yield Check(name, PASS, f"GET {path}{forging} refused with 403")
        elif answer.status == 401 and (not headers or plain.get(path) == 401):
            # The allowlist comes first (WAF rule 0, then the function's own check): a
            # 401 is the identity check behind it, so this address is allowlisted and
            # the allowlist was never put to the test from here.
            yield Check(
                name,
                SKIP,
                f"not performed: GET {path} passed the allowlist (401 from the identity "
                "check behind it): this address is allowlisted; audit from one outside it",
            )
        elif headers:
            answers = (
                f"GET {path} answered {plain.get(path)} without forwarding headers and "
                f"{answer.status} with X-Forwarded-For naming {forged} (on the allowlist)"
            )
            if plain.get(path) == 403:
                # Refused as itself, let through as the address it named: the forged
                # headers decided who the API thinks is asking.
                why = "the API takes the caller's address from a header anyone can send"
            else:
                why = "only a 403 to both shows the allowlist ignores forwarding headers"
            yield Check(name, FAIL, f"{answers}: {why}")
        else:
            yield Check(name, FAIL, f"GET {path} answered {answer.status} without credentials")


def _probe_result(name: str, answers: list[tuple[str, Answer]], reflected: str | None) -> Check:
    limited = rate_limited(answer for _, answer in answers) or redirected(
        answer for _, answer in answers
    )
    if limited:
        return Check(name, FAIL, limited)
    for probe, answer in answers:
        marker = leaked(answer)
        if answer.status >= 500:
            return Check(name, FAIL, f"probe {probe!r} caused a {answer.status}")
        if marker:
            return Check(name, FAIL, f"probe {probe!r} leaked error text ({marker})")
        if reflected and probe in answer.body:
            return Check(name, FAIL, f"probe {probe!r} reflected unescaped in a {answer.status}")
    statuses = sorted({answer.status for _, answer in answers})
    return Check(name, PASS, f"{len(answers)} probes rejected or harmless (statuses {statuses})")


def _credentials_refused(name: str, answers: list[tuple[str, Answer]]) -> Check | None:
    """Not performed when the API refused the audit's own credentials to every probe
    sent with them: identity comes before inspection, so no probe reached it, and a
    PASS would claim a test that was not made. A FAIL, as for a spent key's 429s."""
    if answers and all(answer.status == 401 for _, answer in answers):
        return Check(
            name,
            FAIL,
            "not performed: the API refused --api-key/--token (401) before any probe "
            "reached the search; check them, or audit without them",
        )
    return None


def check_injection(target: Target) -> Iterator[Check]:
    auth = _auth_headers(target)
    sqli = [(p, target.request("GET", f"/recalls?q={quote(p)}", headers=auth)) for p in SQLI_PROBES]
    refused = _credentials_refused("sql_injection_probes", sqli) if auth else None
    sqli.append(("/recalls/1 OR 1=1", target.request("GET", "/recalls/" + quote("1 OR 1=1"))))
    yield refused or _probe_result("sql_injection_probes", sqli, reflected=None)
    xss = [(p, target.request("GET", f"/recalls?q={quote(p)}", headers=auth)) for p in XSS_PROBES]
    refused = _credentials_refused("xss_probes", xss) if auth else None
    yield refused or _probe_result("xss_probes", xss, reflected="yes")
    traversal = target.request("GET", "/recalls/..%2f..%2f..%2fetc%2fpasswd")
    limited = rate_limited([traversal]) or redirected([traversal])
    if limited:
        yield Check("path_traversal_probe", FAIL, limited)
    elif 400 <= traversal.status < 500 and "root:" not in traversal.body:
        yield Check("path_traversal_probe", PASS, f"refused with {traversal.status}")
    else:
        yield Check("path_traversal_probe", FAIL, f"answered {traversal.status}")


def check_error_hygiene(target: Target) -> Iterator[Check]:
    answers = [
        target.request(
            "POST", "/webhooks/recalls", headers={"Content-Type": "application/json"}, body=b"{"
        ),
        target.request("POST", "/auth/login", headers={"Content-Type": "text/plain"}, body=b"x"),
        target.request("GET", "/health", headers={"X-Audit-Long": "a" * 20000}),
    ]
    bad = [a for a in answers if not 400 <= a.status < 500 or leaked(a)]
    limited = rate_limited(answers)
    if limited:
        yield Check("bad_input_is_4xx", FAIL, limited)
    elif bad:
        detail = ", ".join(f"{a.status} {leaked(a) or ''}".strip() for a in bad)
        yield Check("bad_input_is_4xx", FAIL, f"malformed requests answered {detail}")
    else:
        statuses = sorted({a.status for a in answers})
        yield Check("bad_input_is_4xx", PASS, f"malformed requests refused with {statuses}")


def _auth_headers(target: Target) -> dict[str, str]:
    headers = {}
    if target.api_key:
        headers["X-API-Key"] = target.api_key
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return headers


def _unsigned_token() -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": "audit", "role": "admin", "typ": "access", "iat": now, "exp": now + 300}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def check_authentication(target: Target) -> Iterator[Check]:
    cases = {
        "no token": {},
        "malformed token": {"Authorization": "Bearer not.a.token"},
        "alg none token": {"Authorization": f"Bearer {_unsigned_token()}"},
        "unknown API key": {"X-API-Key": "bs_auditnokey_" + "x" * 32},
    }
    failures = []
    answers = []
    for label, headers in cases.items():
        answer = target.request("GET", "/me/subscriptions", headers=headers)
        answers.append(answer)
        if answer.status != 401:
            failures.append(f"{label}: {answer.status}")
    limited = rate_limited(answers)
    if limited:
        yield Check("authentication_required", FAIL, limited)
    elif failures:
        yield Check("authentication_required", FAIL, "; ".join(failures))
    else:
        yield Check("authentication_required", PASS, f"{len(cases)} bad credentials -> 401")


def check_rate_limiting(target: Target) -> Iterator[Check]:
    if not target.api_key:
        yield Check("rate_limiting", SKIP, "needs --api-key (a key whose limit may be spent)")
        return
    headers = {"X-API-Key": target.api_key}
    for sent in range(1, MAX_RATE_PROBES + 1):
        answer = target.request("GET", "/recalls?limit=1", headers=headers)
        if answer.status == 429:
            retry_after = answer.header("retry-after")
            if sent == 1:
                # Refused before this check's first request counted: an earlier run (or
                # another client of the key) spent the limit, so this run proved nothing.
                yield Check(
                    "rate_limiting",
                    FAIL,
                    "not performed: the key's limit was already spent (429 on the first "
                    f"request); {_wait(answer)} and run again",
                )
            elif (_seconds(retry_after or "") or 0) > 0:
                yield Check(
                    "rate_limiting",
                    PASS,
                    f"{sent - 1} requests accepted, then 429 with Retry-After {retry_after}",
                )
            else:
                yield Check("rate_limiting", FAIL, "429 without a usable Retry-After header")
            return
        if answer.status not in (200, 304):
            yield Check("rate_limiting", FAIL, f"the API key's request answered {answer.status}")
            return
    yield Check("rate_limiting", FAIL, f"no 429 within {MAX_RATE_PROBES} requests")


class LegacyTlsUnavailable(Exception):
    """This machine cannot offer TLS 1.0 or 1.1, so a probe with them would prove nothing."""


def _legacy_tls_context() -> ssl.SSLContext:
    if not (ssl.HAS_TLSv1 or ssl.HAS_TLSv1_1):
        raise LegacyTlsUnavailable("this Python's OpenSSL is built without TLS 1.0 and 1.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Only the protocol version the server accepts is under test, not its certificate
    # (the `tls` check verifies that), and this context never carries a request.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            # Offering the deprecated versions is the point of the probe.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        # OpenSSL 3 offers no cipher suite for TLS below 1.2 above security level 0.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as exc:
        raise LegacyTlsUnavailable(_cannot_offer(exc)) from exc
    return context


def _cannot_offer(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or str(exc)
    return f"this machine's OpenSSL cannot offer TLS 1.0 or 1.1 ({reason})"


def legacy_tls_version(host: str, port: int, timeout: float) -> str | None:
    """The version below TLS 1.2 that the server completes a handshake with, or None.

    The ClientHello is built in memory before connecting: when the local OpenSSL cannot
    build one (no protocols or no ciphers available), LegacyTlsUnavailable is raised and
    nothing is sent, so a local limitation is never mistaken for the server's refusal.
    After the ClientHello is sent, any TLS error (the server's protocol_version or
    handshake_failure alert, a reply in another version) or a closed connection is the
    server refusing. OSError when the server cannot be reached or does not answer.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _legacy_tls_context().wrap_bio(incoming, outgoing, server_hostname=host)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass  # the ClientHello is ready; the server's answer is next
    except ssl.SSLError as exc:
        raise LegacyTlsUnavailable(_cannot_offer(exc)) from exc
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            while True:
                raw.sendall(outgoing.read())
                received = raw.recv(16384)
                if not received:
                    return None
                incoming.write(received)
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    continue
                except ssl.SSLError:
                    return None
                return tls.version()
        except ConnectionError:  # reset or aborted mid-handshake; a timeout is no answer
            return None


def check_legacy_tls_refused(host: str, port: int, timeout: float) -> Check:
    name = "tls_legacy_refused"
    try:
        accepted = legacy_tls_version(host, port, timeout)
    except LegacyTlsUnavailable as exc:
        return Check(name, SKIP, f"not performed: {exc}; run it where OpenSSL can offer them")
    except OSError as exc:
        return Check(name, FAIL, f"the TLS 1.0/1.1 probe failed: {exc}")
    if accepted:
        return Check(
            name,
            FAIL,
            f"the server accepted {accepted}; the API's security policy should refuse TLS "
            "below 1.2",
        )
    return Check(name, PASS, "TLS 1.0 and 1.1 refused")


def check_tls(target: Target) -> Iterator[Check]:
    if not target.is_https:
        yield Check("tls", SKIP, "the URL is plain http (local); TLS applies to https only")
        yield Check(
            "tls_legacy_refused", SKIP, "the URL is plain http (local); TLS applies to https only"
        )
        yield Check("hsts_over_tls", SKIP, "HSTS is only meaningful over https")
        return
    parts = urlsplit(target.url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with (
            socket.create_connection((host, port), timeout=target.timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            version = tls.version()
        yield Check("tls", PASS, f"{version}, certificate valid for {host}")
    except (ssl.SSLError, OSError) as exc:
        yield Check("tls", FAIL, f"TLS 1.2+ with a valid certificate failed: {exc}")
    yield check_legacy_tls_refused(host, port, target.timeout)
    yield hsts_check(target.request("GET", "/health"))


def hsts_check(answer: Answer) -> Check:
    """hsts_over_tls: one Strict-Transport-Security field, of a year or more, with
    includeSubDomains."""
    limited = rate_limited([answer])
    if limited:
        return Check("hsts_over_tls", FAIL, limited)
    values = answer.values("strict-transport-security")
    if len(values) > 1:
        return Check(
            "hsts_over_tls",
            FAIL,
            f"Strict-Transport-Security {_sent_times(values)}: browsers obey the first only",
        )
    hsts = values[0] if values else ""
    if _hsts_max_age(hsts) >= HSTS_MIN_AGE_SECONDS and "includesubdomains" in hsts.lower():
        return Check("hsts_over_tls", PASS, hsts)
    return Check("hsts_over_tls", FAIL, f"Strict-Transport-Security is {hsts!r}")


# A year: what browsers' preload lists ask for. max-age=0 tells a browser to forget HSTS.
HSTS_MIN_AGE_SECONDS = 31_536_000


def _hsts_max_age(value: str) -> int:
    """The max-age directive's seconds (0 when absent or malformed)."""
    for directive in value.split(";"):
        name, _, seconds = directive.strip().partition("=")
        if name.strip().lower() == "max-age":
            return _seconds(seconds.strip().strip('"')) or 0
    return 0


# More digits than any real delay (int() refuses past 4300 digits anyway).
_MAX_SECONDS_DIGITS = 12


def _seconds(text: str) -> int | None:
    """A delta-seconds value (RFC 9110: ASCII digits only), or None. str.isdigit()
    alone also takes '²' or '٣', which int() then refuses with a ValueError."""
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text.lstrip("0")) <= _MAX_SECONDS_DIGITS else None


# Each HTTP check and the names of the results it reports, in order: a check that
# breaks partway is reported under the names it had not reported yet, so --json holds
# the same set of names whatever broke.
CHECKS: dict[Callable[[Target], Iterator[Check]], tuple[str, ...]] = {
    check_security_headers: ("security_headers", "no_server_banner"),
    check_admin_protection: (
        "admin_requires_allowlist",
        "monitoring_requires_allowlist",
        "admin_ignores_forwarded_for",
    ),
    check_injection: ("sql_injection_probes", "xss_probes", "path_traversal_probe"),
    check_error_hygiene: ("bad_input_is_4xx",),
    check_authentication: ("authentication_required",),
    check_tls: ("tls", "tls_legacy_refused", "hsts_over_tls"),
    check_rate_limiting: ("rate_limiting",),
    # Last: it reads every answer the checks before it received.
    check_headers_on_every_answer: ("security_headers_on_every_answer",),
}
HTTP_CHECK_NAMES = tuple(name for names in CHECKS.values() for name in names)


AWS_CHECK_NAMES = ("secret_ages", "database_users", "waf_association", "waf_logging")
NO_AWS_ACCESS = "no AWS access: set a profile or credentials, or audit the running local stack"
SKIPPED_BY_FLAG = "skipped: --no-aws (HTTP checks only)"


def run_aws_checks(only: Collection[str] = AWS_CHECK_NAMES) -> list[Check]:
    """The AWS-side checks, or those of them that report a name in `only`."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ops.audit_aws import check_database_users, check_secret_ages, check_waf

    results: list[Check] = []
    for check, names in (
        (check_secret_ages, ("secret_ages",)),
        (check_database_users, ("database_users",)),
        (check_waf, ("waf_association", "waf_logging")),
    ):
        if not set(names) & set(only):
            continue
        try:
            results.extend(check())
        except (BotoCoreError, ClientError) as exc:
            why = f"no answer from AWS: {exc}"
        except Exception as exc:  # noqa: BLE001 - one broken check must not erase the others
            # The type only: a library's text may quote a connection string.
            why = f"the check itself failed: {type(exc).__name__}"
        else:
            continue
        done = {r.name for r in results}  # a check may fail after yielding a result
        results.extend(Check(name, FAIL, why) for name in names if name not in done)
    return results


def run_audit(
    target: Target,
    *,
    aws_skip_reason: str | None = NO_AWS_ACCESS,
    health: Answer | None = None,
    database_url_check: bool = False,
) -> list[Check]:
    """Every HTTP check, then the AWS checks unless there is a reason to skip them;
    with `database_url_check`, the database check runs even then (DATABASE_URL
    reaches the database with no AWS call).

    An edge that refuses this address (`/health` is public; only a block answers it
    403) would answer every probe 403 too, and the probes would pass without
    reaching the API: then no HTTP check is run, and that is one FAIL. `health` is
    the caller's own answer to `GET /health`, if it asked already.
    """
    results: list[Check] = []
    checks = dict(CHECKS)
    if health is None:
        # Unreachable: each check reports its own "no answer".
        with contextlib.suppress(OSError, http.client.HTTPException):
            health = target.request("GET", "/health")
    if health is not None and health.status == 403:
        results.append(
            Check(
                "edge_admits_auditor",
                FAIL,
                "not performed: GET /health answered 403, so this address is refused at "
                "the edge (an auto-block, or a WAF rule matching these requests) and no "
                "probe would reach the API; see `babyshield waf list` and the WAF log, "
                "or audit from another address",
            )
        )
        checks = {}
    for check, names in checks.items():
        done: set[str] = set()
        try:
            for result in check(target):
                results.append(result)
                done.add(result.name)
        except (OSError, http.client.HTTPException) as exc:
            why = f"no answer: {exc}"
        except Exception as exc:  # noqa: BLE001 - one broken check must not erase the others
            # The type only, as for the AWS checks: an answer's text could be quoted.
            why = f"the check itself failed: {type(exc).__name__}"
        else:
            continue
        results.extend(Check(name, FAIL, why) for name in names if name not in done)
    if aws_skip_reason is None:
        results.extend(run_aws_checks())
    else:
        ran = {c.name: c for c in run_aws_checks(["database_users"])} if database_url_check else {}
        results.extend(
            ran.get(name) or Check(name, SKIP, aws_skip_reason) for name in AWS_CHECK_NAMES
        )
    return results


def _same_local_api(url: str, api_url: str) -> bool:
    """`url` names the API at `api_url`: `localhost` is the stack's 127.0.0.1 (it
    listens there), so `--url http://localhost:8080` audits it with its keys and
    secrets, not as a stranger with no AWS access."""

    def where(text: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(text.strip())
        host = (parts.hostname or "").lower()
        scheme = parts.scheme.lower()
        try:
            port = parts.port or {"http": 80, "https": 443}.get(scheme)
        except ValueError:
            port = None
        return (
            scheme,
            "127.0.0.1" if host == "localhost" else host,
            port,
            parts.path.rstrip("/"),
        )

    return bool(api_url) and where(url) == where(api_url)


def local_defaults(url: str) -> dict[str, Any]:
    """Credentials the local stack wrote, when auditing that same stack."""
    from ops.local_state import read_state

    state = read_state()
    if state is None or not _same_local_api(url, str(state.get("api_url", ""))):
        return {}
    return state


def _run(args: argparse.Namespace) -> int:
    if not is_http_url(args.url):
        raise UsageError(
            f"not an http(s) URL: {args.url!r}", hint="e.g. --url http://127.0.0.1:8080"
        )
    for flag, value in (("--api-key", args.api_key), ("--token", args.token)):
        # A header cannot carry these, and http.client's refusal would quote the value.
        if value is not None and (
            not value or any(c.isspace() or not c.isprintable() for c in value)
        ):
            raise UsageError(
                f"{flag} holds whitespace or a control character (a newline read from a "
                "file?); its value is not shown",
                hint=f'pass the value alone, e.g. {flag} "$(cat FILE)"',
            )
    api_key = args.api_key
    if api_key is None:
        # Auditing the local stack: spend the limit of its dedicated audit key.
        keys = local_defaults(args.url).get("api_keys") or []
        audit_keys = [k for k in keys if isinstance(k, dict) and k.get("purpose") == "audit"]
        api_key = audit_keys[0].get("key") if audit_keys else None
    target = Target(url=args.url, api_key=api_key, token=args.token, timeout=args.timeout)
    try:
        health = target.request("GET", "/health")
    except (OSError, http.client.HTTPException) as exc:
        raise CommandError(
            f"cannot reach {args.url}: {exc}", hint="is the stack running? start it with `make run`"
        ) from exc
    if args.no_aws:
        aws_skip_reason: str | None = SKIPPED_BY_FLAG
    else:
        aws_skip_reason = None if _aws_access(args.url) else NO_AWS_ACCESS
    if aws_skip_reason is None:
        target.allowlisted = _deployed_allowlisted_address()
    from functions.shared.settings import get_settings

    results = run_audit(
        target,
        aws_skip_reason=aws_skip_reason,
        health=health,
        # A host in the VPC reaches the database with DATABASE_URL alone, whatever AWS
        # access it has: the backdoor search after a leak must not depend on that.
        database_url_check=not args.no_aws and bool(get_settings().database_url),
    )
    if args.json:
        print_json({"checks": [asdict(r) for r in results]})
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            print(f"{r.status:<4}  {r.name.ljust(width)}  {r.detail}")
        failed = sum(r.status == FAIL for r in results)
        print(f"\n{len(results)} checks, {failed} failed, {target.requests_sent} requests sent")
    return 1 if any(r.status == FAIL for r in results) else 0


def _deployed_allowlisted_address() -> str | None:
    """An address on the deployed admin allowlist (its SSM parameter in AWS; the
    local stack's comes from its environment), or None if it cannot be read."""
    from functions.shared import blocks, names
    from functions.shared.settings import get_settings

    settings = get_settings()
    if settings.aws_endpoint_url or settings.is_local:
        return None  # the settings hold the local stack's list (_allowlisted_address)
    parameter = settings.admin_allowed_cidrs_parameter or names.ADMIN_ALLOWLIST_PARAMETER
    try:
        networks = blocks.read_cidrs(parameter, settings.admin_allowed_cidrs)
    except blocks.ProtectedListUnavailable:
        return None
    return _an_address_in(networks)


def _aws_access(url: str) -> bool:
    """Can the AWS-side checks run: this is the local stack, the shell names an AWS
    target, or botocore finds credentials in any of its places (a profile in ~/.aws
    without AWS_PROFILE, SSO, an instance or container role)."""
    import os

    from ops.local_state import AWS_TARGET_VARIABLES, apply_local_environment

    if local_defaults(url):
        return apply_local_environment()
    if any(os.environ.get(name) for name in AWS_TARGET_VARIABLES):
        # Aimed at AWS even if no credentials resolve: the checks then FAIL saying why,
        # where a SKIP would hide the broken setup behind exit 0.
        return True
    return _botocore_finds_credentials()


def _botocore_finds_credentials() -> bool:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.Session().get_credentials() is not None
    except BotoCoreError:
        # Configuration botocore cannot use (a broken ~/.aws/config, an SSO profile
        # without its cache): meant for AWS, so the checks run and FAIL with the reason.
        return True


def request_timeout(text: str) -> float:
    """--timeout: 0 would make the sockets non-blocking, a negative one is refused by them."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:  # NaN and infinity fail this too
        raise argparse.ArgumentTypeError(
            f"the timeout is more than 0 and at most {MAX_TIMEOUT_SECONDS:g} seconds"
        )
    return seconds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="security audit of a running deployment",
        description="Probe a running deployment (the local stack or AWS) and print PASS, "
        "FAIL or SKIP per check with its reason: security headers, admin lockout, "
        "authentication, injection probes, rate limits, TLS, and (without --no-aws) "
        "secrets, database users and the WAF. Exit 1 on any FAIL; a check that could "
        "not run says `not performed` and why.",
    )
    parser.add_argument("--url", required=True, help="the API's base URL")
    parser.add_argument("--api-key", help="an API key whose rate limit the audit may spend")
    parser.add_argument("--token", help="a valid access token (enables authenticated probes)")
    parser.add_argument(
        "--timeout", type=request_timeout, default=10.0, help="seconds per request (default: 10)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--no-aws", action="store_true", help="HTTP checks only (skip secrets, database, WAF)"
    )
    parser.set_defaults(func=_run)
