"""Any request to any route, from any caller: never a 5xx, never a trace, never an echo.

Hypothesis builds requests from the API's own route table, so a route added
later is covered without touching this file: the route's method or another one,
its path with generated parameters, a generated query string, a body (JSON in
the shape of the route's model with generated values, any JSON, or raw bytes),
and a caller (anonymous, garbage credentials, a user's token, a user's API key,
the whole admin chain from an allowlisted address, a signed webhook delivery).
PostgreSQL and the moto server are real, so a request that gets past the edge
runs the route's real logic.

Every answer must be below 500 with the security headers; a refusal must be a
JSON error that repeats none of the request's generated text (validation
answers name fields, never values) and no stack trace.
"""

from __future__ import annotations

import json
import re
import typing
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from functions.api.middleware.admin_chain import route_needs_signature, sign_admin_request
from functions.api.middleware.security_headers import SECURITY_HEADERS
from ops.webhook import signed_request
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import ApiResponse, call_api
from tests.support.waf import create_resources

# Put into generated text, so an answer that repeats input is caught even when the
# generated text itself is short enough to occur in any answer by chance.
MARK = "qz7Fuzz"
TRACE = re.compile(r"Traceback|File \"|line \d+, in |psycopg|botocore", re.IGNORECASE)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
ANONYMOUS_IP = "198.51.100.77"


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # Powertools' form: /recalls/<recall_id>
    body_model: type[BaseModel] | None


def route_table() -> list[RouteSpec]:
    from functions.api.app import app

    specs = []
    for route in app._static_routes + app._dynamic_routes:
        hints = typing.get_type_hints(route.func)
        hints.pop("return", None)
        models = [
            model
            for hint in hints.values()
            for model in (hint, *typing.get_args(hint))
            if isinstance(model, type) and issubclass(model, BaseModel)
        ]
        specs.append(RouteSpec(route.method, route.path, models[0] if models else None))
    return sorted(specs, key=lambda spec: (spec.path, spec.method))


ROUTES = route_table()

marked_text = st.text(max_size=24).map(lambda text: text + MARK)
plausible = st.sampled_from(
    [
        "recalls:read",
        "admin",
        "crib",
        "Acme",
        "2024-01-31",
        "2024-01-31T10:00:00Z",
        "recall.created",
        "https://example.com/recall",
        "203.0.113.7",
        "2001:db8::7",
        "someone@example.com",
        str(uuid.uuid4()),
        "",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=500),
    st.floats(allow_nan=False, allow_infinity=False),
    marked_text,
    plausible,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(marked_text, inner, max_size=4),
    max_leaves=12,
)


def shaped_body(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    """A JSON object with the model's fields (some left out, one maybe extra)."""
    fields = st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(model.model_fields, json_values),
    )
    nested = {
        name: field.annotation
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    if nested:
        fields = st.tuples(fields, *(shaped_body(sub) for sub in nested.values())).map(
            lambda parts: {**parts[0], **dict(zip(nested, parts[1:], strict=True))}
        )
    extra = st.dictionaries(marked_text, json_values, max_size=1)
    return st.tuples(fields, extra).map(lambda parts: {**parts[0], **parts[1]})


def path_value() -> st.SearchStrategy[str]:
    return st.one_of(
        marked_text.filter(lambda text: "/" not in text and "?" not in text and "#" not in text),
        st.sampled_from(["1", "0", "-1", "99999999999999999999", str(uuid.uuid4())]),
        st.sampled_from(["203.0.113.7", "2001:db8::7", "bs_live_" + "a" * 8, "..", "%2e%2e"]),
    )


CALLERS = ("anonymous", "garbage", "user", "user_key", "admin", "webhook")


def intended_caller(path: str) -> str:
    """Who the route is for, so that most requests get past the edge to the route."""
    for prefix, caller in (
        ("/admin", "admin"),
        ("/webhooks", "webhook"),
        ("/me", "user"),
        ("/auth/me", "user"),
        ("/recalls", "user_key"),
    ):
        if path.startswith(prefix):
            return caller
    return "anonymous"


# Mostly JSON, as a client sends it; also spelled in any case (media types are
# case-insensitive, and a capitalised one once passed our check and failed the body
# parser's), with parameters and spaces, and the types an HTML form can send.
JSON_TYPE = "application/json"
any_case_json = st.lists(st.booleans(), min_size=len(JSON_TYPE), max_size=len(JSON_TYPE)).map(
    lambda ups: "".join(c.upper() if up else c for c, up in zip(JSON_TYPE, ups, strict=True))
)
content_types = st.one_of(
    st.just("application/json"),
    any_case_json,
    st.tuples(any_case_json, st.sampled_from(["", ";", "; charset=utf-8", " ;charset=UTF-8"])).map(
        "".join
    ),
    st.sampled_from(
        [
            " application/json ",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "application/json-patch+json",
            "",
        ]
    ),
)


@st.composite
def requests(draw: st.DrawFn, spec: RouteSpec) -> dict[str, Any]:
    # Weighted towards the route's own method and caller: the deep paths are the rare ones.
    method = draw(st.sampled_from((spec.method,) * len(METHODS) + METHODS))
    path = spec.path
    for name in re.findall(r"<(\w+)>", spec.path):
        path = path.replace(f"<{name}>", draw(path_value()), 1)
    query = urlencode(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["q", "brand", "since", "limit", "cursor", "owner_id"])
                    | marked_text,
                    st.one_of(marked_text, plausible, st.integers().map(str)),
                ),
                max_size=4,
            )
        )
    )
    bodies = [st.none(), json_values.map(json.dumps), st.binary(max_size=64)]
    if spec.body_model is not None:
        bodies.append(shaped_body(spec.body_model).map(json.dumps))
    body = draw(st.one_of(*bodies))
    caller = draw(st.sampled_from(CALLERS + (intended_caller(spec.path),) * 3))
    garbage = draw(marked_text)
    return {
        "method": method,
        "path": path,
        "query": query,
        "body": body,
        "caller": caller,
        "garbage": garbage,
        "content_type": draw(content_types),
    }


def credentials(world: Any, who: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Headers and source address for the request's caller."""
    caller, body = request["caller"], request["body"]
    raw = body.encode() if isinstance(body, str) else (body or b"")
    headers: dict[str, str] = {"Content-Type": request["content_type"]}
    source_ip = ANONYMOUS_IP
    if caller == "garbage":
        headers |= {
            "Authorization": f"Bearer {request['garbage']}",
            "X-API-Key": request["garbage"],
            "webhook-id": request["garbage"],
            "webhook-signature": request["garbage"],
        }
    elif caller == "user":
        headers["Authorization"] = f"Bearer {who['user_token']}"
    elif caller == "user_key":
        headers["X-API-Key"] = who["user_key"]
    elif caller == "admin":
        source_ip = ADMIN_IP
        headers["Authorization"] = f"Bearer {who['admin_token']}"
        if route_needs_signature(request["method"], request["path"]):
            headers |= sign_admin_request(
                who["admin_key"], request["method"], request["path"], raw, query=request["query"]
            )
        else:
            headers["X-API-Key"] = who["admin_key"]
    elif caller == "webhook":
        headers |= signed_request(world.webhook_secret, raw)
    return {"headers": headers, "source_ip": source_ip}


def assert_safe(response: ApiResponse) -> None:
    assert response.status < 500, (response.status, response.body)
    for name in SECURITY_HEADERS:
        assert response.header(name) is not None, name
    assert not TRACE.search(response.body), response.body
    if response.status >= 400 and response.body:
        assert MARK.lower() not in response.body.lower(), response.body
        document = response.json()
        assert isinstance(document["error"]["code"], str)


@pytest.fixture
def who(world: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from functions.shared.settings import get_settings

    create_resources(monkeypatch)  # the WAF IP sets behind /admin/blocks
    # Every admin mutation signed, so the fuzzed admin caller exercises that lock too.
    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", "POST /admin/*,DELETE /admin/*")
    get_settings.cache_clear()
    user = world.create_user("fuzz-user@example.com", "correct horse")
    admin = world.create_user("fuzz-admin@example.com", "battery staple", role="admin")
    # Limits no run reaches: a 429 would stop the requests from reaching the routes.
    return {
        "user_token": world.token(user),
        "user_key": world.create_key(user, limit=100_000),
        "admin_key": world.create_key(admin, scopes=("admin", "recalls:read"), limit=100_000),
        "admin_token": world.token(admin, "admin"),
    }


def test_the_route_table_is_read():
    # The strategies are only as wide as this table: an empty one would pass vacuously.
    paths = {spec.path for spec in ROUTES}
    assert {"/health", "/recalls", "/auth/login", "/webhooks/recalls", "/admin/blocks"} <= paths
    assert any(spec.body_model is not None for spec in ROUTES)
    assert any("<" in spec.path for spec in ROUTES)


# Hypothesis warns when the global `random` state moves during a draw. The strategies
# here never touch it; psycopg_pool's worker threads do, jittering a new pooled
# connection's lifetime with `random.random()`, and now and then one lands inside a draw.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.parametrize("spec", ROUTES, ids=lambda spec: f"{spec.method} {spec.path}")
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_request_gets_a_server_error_or_an_echo(world, who, spec, data):
    request = data.draw(requests(spec))
    response = call_api(
        request["method"],
        request["path"],
        query=request["query"],
        body=request["body"],
        **credentials(world, who, request),
    )
    assert_safe(response)
