"""Security headers: the secure defaults, declared once, and how they are applied.

The core is framework-neutral (`apply_security_headers` works on the final API
Gateway proxy response dict). The resolver applies it as the very last step, so
every answer carries the headers: routed responses, 404/405, validation errors,
and the 500 built for an unexpected exception alike.
"""

from __future__ import annotations

from typing import Any

SECURITY_HEADERS: dict[str, str] = {
    # Two years with preload: the value hstspreload.org requires (MDN: Strict-Transport-Security).
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
    # A JSON API loads nothing and is never framed (OWASP Secure Headers: REST APIs).
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # Legacy twin of frame-ancestors for browsers without CSP level 2.
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Deny powerful features outright (MDN: Permissions-Policy).
    "Permissions-Policy": (
        "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
        "magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()"
    ),
    "Cross-Origin-Resource-Policy": "same-origin",
    # Responses may carry personal data (subscriptions, tokens): no cache may keep them.
    "Cache-Control": "no-store",
    # "0", not "1; mode=block": the XSS auditor's blocking mode could be abused to
    # leak page content cross-site and was removed from browsers; OWASP now
    # recommends disabling it and relying on CSP.
    "X-XSS-Protection": "0",
}
# What API Gateway's own answers carry (its gateway responses, cdk/api.py; rendered so
# locally by ops/local_edge.py): a static header mapping is a quoted string, so not
# the CSP, whose 'none' is quoted too.
GATEWAY_RESPONSE_HEADERS: dict[str, str] = {
    name: value for name, value in SECURITY_HEADERS.items() if "'" not in value
}

# Headers that would tell an attacker what runs behind the API.
LEAKY_HEADERS = frozenset({"server", "x-powered-by", "x-aspnet-version", "via"})

_OWNED = {name.lower() for name in SECURITY_HEADERS} | LEAKY_HEADERS


def apply_security_headers(response: dict[str, Any]) -> dict[str, Any]:
    """Set every security header on a proxy response, replacing weaker values.

    Works on both `headers` and `multiValueHeaders`; a route cannot override
    these (a handler setting `Cache-Control: public` would be a bug, not a wish).
    """
    headers = response.get("headers")
    if isinstance(headers, dict):
        headers = {k: v for k, v in headers.items() if k.lower() not in _OWNED}
        response["headers"] = headers
    multi = response.get("multiValueHeaders")
    if isinstance(multi, dict):
        multi = {k: v for k, v in multi.items() if k.lower() not in _OWNED}
        for name, value in SECURITY_HEADERS.items():
            multi[name] = [value]
        response["multiValueHeaders"] = multi
    elif isinstance(headers, dict):
        headers.update(SECURITY_HEADERS)
    else:
        response["headers"] = dict(SECURITY_HEADERS)
    return response
