"""The OpenAPI document tells the truth about the API: success statuses and bodies,
every refusal's status and body, the credentials each path asks for, and the path
parameters the logic accepts.

What a route can refuse is read from the code itself (`raised_by`): the exception
classes raised in the route's call tree, following the functions it calls by name
or through a module (and the lambdas and functions it passes on), and a `try`'s
handlers only when what they catch can be raised in it. Calls it cannot resolve
(methods on instances) are not followed, so what it finds is an answer the route
can give: a status it finds that the document lacks is a real omission.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import types
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from aws_lambda_powertools.event_handler import Response
from hypothesis import given
from hypothesis import strategies as st

from functions.api.admin import keys
from functions.api.app import app
from functions.api.middleware import admin_allowlist, admin_chain, authentication
from functions.api.middleware.attack_inspection import inspect_request
from functions.api.middleware.policies import Policy, policy_for
from functions.api.middleware.request_limits import BODY_METHODS, check_request_limits
from functions.api.recalls.logic import parse_recall_id, parse_subscription_id
from functions.shared.errors import (
    DomainError,
    MethodNotAllowed,
    TooManyRequests,
    ValidationFailed,
    to_http,
)
from functions.shared.settings import Settings
from ops.openapi import openapi_document, path_parameter_schemas

ERROR_REF = "#/components/schemas/Error"

# Where each policy's refusals are decided (functions/api/middleware/authentication.py).
POLICY_GUARDS: dict[Policy, tuple[Any, ...]] = {
    Policy.PUBLIC: (),
    Policy.OPTIONAL: (authentication._key_caller, authentication._token_caller),
    Policy.USER: (authentication._token_caller,),
    Policy.ADMIN: (admin_allowlist.enforce_admin_allowlist, admin_chain.enforce_admin_chain),
    Policy.WEBHOOK: (authentication.verify_webhook_request,),
}


@dataclass(frozen=True)
class LambdaArgument:
    node: ast.Lambda
    scope: dict[str, Any]


def _tree(function: Any) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    node = ast.parse(source).body[0]
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def _imported_inside(node: ast.AST) -> dict[str, Any]:
    """Names a function imports in its body (the code defers heavy imports)."""
    names: dict[str, Any] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
            module = importlib.import_module(sub.module)
            for alias in sub.names:
                value = getattr(module, alias.name, None)
                if value is None:
                    value = importlib.import_module(f"{sub.module}.{alias.name}")
                names[alias.asname or alias.name] = value
        elif isinstance(sub, ast.Import):
            for alias in sub.names:
                top = alias.name if alias.asname else alias.name.split(".")[0]
                importlib.import_module(alias.name)
                names[alias.asname or top] = importlib.import_module(top)
    return names


def _resolve(expr: ast.expr, scope: dict[str, Any]) -> Any:
    if isinstance(expr, ast.Name):
        return scope.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, scope)
        if isinstance(base, types.ModuleType | type):
            return getattr(base, expr.attr, None)
    return None


def _is_ours(function: Any) -> bool:
    return (
        callable(function)
        and not isinstance(function, type)
        and isinstance(inspect.unwrap(function), types.FunctionType)
        and inspect.unwrap(function).__module__.startswith("functions.")
    )


class Raises:
    """The exception classes a function can raise (see the module docstring)."""

    def __init__(self) -> None:
        self._done: dict[Any, set[type[BaseException]]] = {}
        self._running: set[Any] = set()

    def function(
        self, function: Any, bound: dict[str, Any] | None = None
    ) -> set[type[BaseException]]:
        function = inspect.unwrap(function)
        if not bound and function in self._done:
            return self._done[function]
        node = _tree(function)
        if node is None or function in self._running:
            return set()
        scope = {**function.__globals__, **_imported_inside(node), **(bound or {})}
        self._running.add(function)
        try:
            found = self._all(node.body, scope, set())
        finally:
            self._running.discard(function)
        if not bound:
            self._done[function] = found
        return found

    def _all(
        self, nodes: list[Any], scope: dict[str, Any], handling: set[type[BaseException]]
    ) -> set[type[BaseException]]:
        found: set[type[BaseException]] = set()
        for node in nodes:
            found |= self._node(node, scope, handling)
        return found

    def _node(
        self, node: ast.AST, scope: dict[str, Any], handling: set[type[BaseException]]
    ) -> set[type[BaseException]]:
        # A nested definition runs only when called (a lambda argument: see _call).
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            return set()
        if isinstance(node, ast.Try):
            return self._try(node, scope, handling)
        found: set[type[BaseException]] = set()
        if isinstance(node, ast.Raise):
            if node.exc is None:
                found |= handling
            else:
                raised = _resolve(
                    node.exc.func if isinstance(node.exc, ast.Call) else node.exc, scope
                )
                if isinstance(raised, type) and issubclass(raised, BaseException):
                    found.add(raised)
        if isinstance(node, ast.Call):
            found |= self._call(node, scope)
        for child in ast.iter_child_nodes(node):
            found |= self._node(child, scope, handling)
        return found

    def _try(
        self, node: ast.Try, scope: dict[str, Any], handling: set[type[BaseException]]
    ) -> set[type[BaseException]]:
        body = self._all(node.body, scope, handling)
        escaped = set(body)
        found: set[type[BaseException]] = set()
        for handler in node.handlers:
            names = (
                []
                if handler.type is None
                else handler.type.elts
                if isinstance(handler.type, ast.Tuple)
                else [handler.type]
            )
            classes = [_resolve(name, scope) for name in names] or [BaseException]
            known = [c for c in classes if isinstance(c, type)]
            caught = {e for e in escaped if any(issubclass(e, c) for c in known)}
            escaped -= caught
            # Another library's exception may come from any call this cannot follow.
            foreign = len(known) < len(classes) or any(
                not c.__module__.startswith("functions.") for c in known
            )
            if caught or foreign:
                found |= self._all(handler.body, scope, caught)
        found |= escaped
        return found | self._all(node.orelse + node.finalbody, scope, handling)

    def _call(self, node: ast.Call, scope: dict[str, Any]) -> set[type[BaseException]]:
        target = _resolve(node.func, scope)
        if isinstance(target, LambdaArgument):
            return self._node(target.node.body, target.scope, set())
        if not _is_ours(target):
            return set()
        parameters = list(inspect.signature(inspect.unwrap(target)).parameters)
        passed = list(zip(parameters, node.args, strict=False))
        passed += [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
        bound: dict[str, Any] = {}
        for name, value in passed:
            if isinstance(value, ast.Lambda):
                bound[name] = LambdaArgument(value, scope)
            elif _is_ours(_resolve(value, scope)):
                bound[name] = _resolve(value, scope)
        return self.function(target, bound)


RAISES = Raises()


def statuses_raised_by(*functions: Any) -> set[int]:
    raised = set().union(*(RAISES.function(f) for f in functions))
    return {error.status for error in raised if issubclass(error, DomainError)}


def _operations() -> list[tuple[Any, dict[str, Any]]]:
    document = openapi_document()
    return [
        (route, document["paths"][route.openapi_path][route.method.lower()])
        for route in app._static_routes + app._dynamic_routes
    ]


OPERATIONS = _operations()
IDS = [f"{route.method} {route.openapi_path}" for route, _ in OPERATIONS]


def _documented(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"]}


def _policy(route: Any) -> Policy:
    return policy_for(route.openapi_path, Settings())


def _responses_built(route: Any) -> list[ast.Call]:
    """The `Response(...)` calls of a route and of the helpers in its module it calls."""
    module = inspect.getmodule(route.func)
    calls: list[ast.Call] = []
    pending, seen = [route.func], set()
    while pending:
        function = pending.pop()
        node = _tree(function)
        if node is None or function in seen:
            continue
        seen.add(function)
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            target = _resolve(call.func, function.__globals__)
            if target is Response:
                calls.append(call)
            elif inspect.isfunction(target) and inspect.getmodule(target) is module:
                pending.append(target)
    return calls


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_success_status_and_body_are_what_the_route_returns(route, operation):
    # Given the responses the route builds (a plain return value is a 200 with a body)
    built: dict[int, bool] = {}
    for call in _responses_built(route):
        arguments = {kw.arg: kw.value for kw in call.keywords}
        literal = arguments.get("status_code", call.args[0] if call.args else None)
        assert isinstance(literal, ast.Constant), "a literal status, so it can be documented"
        assert isinstance(literal.value, int)
        body = arguments.get("body")
        built[literal.value] = not (isinstance(body, ast.Constant) and body.value is None)
    expected = built or {route.status_code: True}
    # Then the document has exactly those successes, a body only where one is sent
    successes = {int(s): r for s, r in operation["responses"].items() if int(s) < 400}
    assert set(successes) == set(expected)
    for status, has_body in expected.items():
        assert ("content" in successes[status]) is has_body, status
        if has_body:
            schema = successes[status]["content"]["application/json"]["schema"]
            assert "$ref" in schema or "type" in schema, f"{status} documents any JSON at all"


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_every_refusal_has_the_api_error_body(route, operation):
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            assert response["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}
            assert response["description"]
    if 429 in _documented(operation):
        assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_the_error_schema_is_what_to_http_writes():
    # Given the documented Error schema and what the one mapping writes
    document = openapi_document()
    schema = document["components"]["schemas"]["Error"]
    inner = schema["properties"]["error"]
    for error in (ValidationFailed(["body.email"]), TooManyRequests(3), MethodNotAllowed(["GET"])):
        body = to_http(error, "request-1").body
        # Then every key it writes is documented, and every required key is written
        assert set(body) == set(schema["required"]) == {"error"}
        assert set(inner["required"]) <= set(body["error"]) <= set(inner["properties"])
        for key, value in body["error"].items():
            expected = inner["properties"][key]["type"]
            assert isinstance(value, list if expected == "array" else str)
    # And Powertools' own validation answer, which the API never sends, is gone
    text = str(document)
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        assert name not in document["components"]["schemas"]
        assert f"#/components/schemas/{name}" not in text


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_the_edge_guards_refusals_are_documented(route, operation):
    # The guards run on every request before routing; media type only where a body goes.
    edge = statuses_raised_by(check_request_limits, inspect_request)
    assert 415 in edge
    expected = edge if route.method in BODY_METHODS else edge - {415}
    assert expected <= _documented(operation)
    assert (415 in _documented(operation)) is (route.method in BODY_METHODS)


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_the_path_policys_refusals_are_documented(route, operation):
    policy = _policy(route)
    assert statuses_raised_by(*POLICY_GUARDS[policy]) <= _documented(operation)
    if policy is not Policy.PUBLIC:
        assert 401 in _documented(operation)
    if policy is Policy.ADMIN:
        assert {401, 403, 429} <= _documented(operation)


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_the_route_logics_refusals_are_documented(route, operation):
    assert statuses_raised_by(route.func) <= _documented(operation)


@pytest.mark.parametrize(
    ("method", "path", "found", "not_found"),
    [
        # Through a lambda handed to a helper that maps the block module's exceptions.
        ("POST", "/admin/blocks", {400, 409, 503}, set()),
        # The same helper maps a protected address to 409, which only blocking raises.
        ("DELETE", "/admin/blocks/{ip}", {400, 404, 503}, {409}),
        # Through lazy imports and the database session's context manager.
        ("GET", "/recalls/{recall_id}", {400, 404, 503}, set()),
        ("POST", "/auth/login", {401, 429, 503}, set()),
    ],
)
def test_the_logic_reading_finds_what_routes_raise(method, path, found, not_found):
    # A guard for the test above: the reading finds what the routes raise, not nothing
    # and not everything.
    route, operation = next(
        (r, o) for r, o in OPERATIONS if (r.method, r.openapi_path) == (method, path)
    )
    raised = statuses_raised_by(route.func)
    assert found <= raised <= _documented(operation)
    assert not raised & not_found


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_422_only_where_validation_can_refuse(route, operation):
    takes_input = "requestBody" in operation or any(
        p["in"] != "path" for p in operation.get("parameters", [])
    )
    assert (422 in _documented(operation)) is takes_input


@pytest.mark.parametrize(("route", "operation"), OPERATIONS, ids=IDS)
def test_security_follows_the_path_policy(route, operation):
    schemes = openapi_document()["components"]["securitySchemes"]
    policy = _policy(route)
    security = operation.get("security", [])
    assert all(name in schemes for requirement in security for name in requirement)
    expected: dict[Policy, list[dict[str, list[str]]]] = {
        Policy.PUBLIC: [],
        Policy.OPTIONAL: [{}, {"ApiKey": []}, {"BearerAuth": []}],
        Policy.USER: [{"BearerAuth": []}],
        Policy.ADMIN: [{"ApiKey": [], "BearerAuth": []}],
        Policy.WEBHOOK: [{"WebhookSignature": []}],
    }
    assert security == expected[policy]


def test_security_schemes_name_the_headers_the_api_reads():
    schemes = openapi_document()["components"]["securitySchemes"]
    assert schemes["ApiKey"] == schemes["ApiKey"] | {"type": "apiKey", "in": "header"}
    assert schemes["ApiKey"]["name"].lower() == authentication.API_KEY_HEADER
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["WebhookSignature"]["name"] == "webhook-signature"
    for header in ("webhook-id", "webhook-timestamp"):
        assert header in schemes["WebhookSignature"]["description"]


def test_each_path_lists_exactly_the_methods_its_405_names_in_allow():
    # The document says a method a path does not list answers 405 with `Allow`; so
    # what Allow names (HEAD with GET: functions/api/app.py::_methods_for) is listed.
    from functions.api.app import _methods_for

    for path, item in openapi_document()["paths"].items():
        assert {method.upper() for method in item} == set(_methods_for(path)), path


def test_head_is_the_get_it_stands_for_without_a_body():
    # Given every operation, and each path's GET and HEAD
    document = openapi_document()
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operation ids are unique"
    pairs = [(item["get"], item["head"]) for item in document["paths"].values() if "get" in item]
    assert pairs
    for get, head in pairs:
        # Then HEAD takes the same parameters and credentials
        assert head.get("parameters") == get.get("parameters")
        assert head.get("security") == get.get("security")
        # And answers the same statuses with the same headers, never a body
        assert head["responses"] == {
            status: {key: value for key, value in response.items() if key != "content"}
            for status, response in get["responses"].items()
        }
        assert head["operationId"].endswith("_head")


def _path_schemas() -> dict[str, dict[str, Any]]:
    return {
        parameter["name"]: parameter["schema"]
        for _, operation in OPERATIONS
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }


def _accepts(parse: Any, raw: str) -> bool:
    try:
        parse(raw)
    except DomainError:
        return False
    return True


def _documented_recall_id(raw: str) -> bool:
    schema = _path_schemas()["recall_id"]
    # An integer path parameter is written in canonical decimal digits.
    if not re.fullmatch(r"-?[0-9]+", raw) or str(int(raw)) != raw:
        return False
    return bool(schema["minimum"] <= int(raw) <= schema["maximum"])


@pytest.mark.parametrize(
    "raw",
    ["1", "0", "-1", "01", "+1", "1.0", " 1", "", "x", "\u0661", str(2**63 - 1), str(2**63)],
)
def test_recall_ids_documented_are_exactly_those_accepted(raw):
    assert _documented_recall_id(raw) is _accepts(parse_recall_id, raw)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_recall_ids_documented_are_exactly_those_accepted_for_any_number(number):
    assert _documented_recall_id(str(number)) is _accepts(parse_recall_id, str(number))


@given(st.uuids())
def test_every_documented_subscription_id_is_accepted(value: UUID):
    assert _path_schemas()["subscription_id"]["format"] == "uuid"
    assert parse_subscription_id(str(value)) == value
    assert parse_subscription_id(str(value).upper()) == value


@given(st.text(alphabet="0123456789abcdefABCDEFg_-", max_size=20))  # pragma: allowlist secret
def test_key_ids_documented_are_exactly_those_accepted(raw):
    pattern = _path_schemas()["key_id"]["pattern"]
    documented = re.search(pattern, raw) is not None
    # An id the API does not accept is answered like an unknown key: 404.
    assert documented is _accepts(keys._key_id, raw)


def test_every_path_parameter_constraint_is_used():
    schemas = _path_schemas()
    for name, constraint in path_parameter_schemas().items():
        assert name in schemas, f"no route has a path parameter {name} any more"
        assert constraint.items() <= schemas[name].items()
