"""`babyshield openapi`: write the API's OpenAPI document, generated from the routes.

Powertools documents what the routes declare: parameters, bodies, and the
`responses=` of each decorator (success status and body, and the refusals of the
route's own logic). What no route declares is added here, derived from the code
that decides it, so it stays true when routes change:

- every refusal's body is the one shape of `functions/shared/errors.py::to_http`
  (Powertools would document its own `HTTPValidationError`, which the API never sends);
- the refusals of the edge guards (functions/api/app.py) and of each path's policy
  (functions/api/middleware/policies.py), and 422 where a route validates input;
- the credentials each path's policy asks for, as security requirements;
- path parameters that the route logic parses itself, refusing anything else;
- HEAD wherever GET is (functions/api/resolver.py answers it as the GET without the
  body), so an `Allow` that names HEAD names a documented method.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.console import CommandError

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme

    from functions.api.middleware.policies import Policy
    from functions.api.resolver import SecureResolver
    from functions.shared.settings import Settings

ERROR_REF = "#/components/schemas/Error"
# What Powertools adds for its own validation answers; dropped once nothing refers to
# them (so each before the schemas it refers to).
POWERTOOLS_ERROR_SCHEMAS = ("HTTPValidationError", "ResponseValidationError", "ValidationError")
DEPENDENCY_DOWN = "A service the request needs (database, Secrets Manager, DynamoDB) is down."
KEY_OVER_LIMIT = "The API key is over its per-minute limit."
# What no single operation can say: answers from in front of the API (cdk/waf.py), and
# to methods the document does not list.
API_DESCRIPTION = (
    "Every refusal has the Error body. AWS WAF in front of the API may also refuse any "
    "request itself: 429 with Retry-After (the per-address rate limit, an Error body) or 403 "
    "(a blocked address or a matched rule). A method a path does not list answers 405 with "
    "`Allow`."
)

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every refusal (functions/shared/errors.py::to_http). Messages are fixed "
    "texts, never the request's input.",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable, e.g. not_found or validation_error",
                },
                "message": {"type": "string", "description": "For people"},
                "correlation_id": {
                    "type": "string",
                    "description": "The API Gateway request id, for support",
                },
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Only on 422: where each failure is (body.email, query.limit)",
                },
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "problem"],
                        "additionalProperties": False,
                        "properties": {
                            "field": {"type": "string", "description": "as in `fields`"},
                            "problem": {
                                "type": "string",
                                "description": "what is wrong there, a fixed phrase "
                                "(required, out of range, ...), never the input",
                            },
                        },
                    },
                    "description": "Only on 422: each failure with what is wrong",
                },
            },
        }
    },
}

# What every response with this status also carries.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}

VALIDATION_FAILED = (
    "A parameter or the body failed validation; `fields` says where, `problems` what."
)


def edge_refusals(method: str, defaults: Settings) -> dict[int, str]:
    """What the edge guards (functions/api/app.py) refuse on any request, before routing."""
    from functions.api.middleware.request_limits import BODY_METHODS

    refusals = {
        400: "A body that is not valid base64, UTF-8 or JSON, or input that looks like an "
        "attack (never echoed).",
        # The size limit applies to whatever body is sent, whatever the method.
        413: f"The body is over {defaults.max_body_bytes} bytes (the default limit).",
        431: f"A header is over {defaults.max_header_bytes} bytes, or all of them over "
        f"{defaults.max_total_header_bytes} (the default limits).",
    }
    if method.upper() in BODY_METHODS:
        refusals[415] = "A body that is not application/json."
    return refusals


def policy_refusals(policy: Policy) -> dict[int, str]:
    """What authentication (functions/api/middleware/authentication.py) refuses per policy."""
    from functions.api.middleware.policies import Policy

    refusals: dict[Policy, dict[int, str]] = {
        Policy.PUBLIC: {},
        Policy.OPTIONAL: {
            401: "A presented API key or access token is invalid.",
            403: "The API key lacks the recalls:read scope.",
            429: KEY_OVER_LIMIT,
            503: DEPENDENCY_DOWN,
        },
        Policy.USER: {
            401: "The access token is missing, invalid or expired, or its account is deleted.",
            503: DEPENDENCY_DOWN,
        },
        Policy.ADMIN: {
            401: "The admin API key (or a required request signature) is missing or invalid, "
            "answered with an `ApiKey` challenge (`ApiKey-Signature`, naming its headers, "
            "where the signature is required); or the access token is missing, invalid or "
            "expired, with a `Bearer` one.",
            403: "The source address is not on the admin allowlist, or the key or the user "
            "is not an admin.",
            429: KEY_OVER_LIMIT,
            503: DEPENDENCY_DOWN,
        },
        Policy.WEBHOOK: {
            401: "The Standard Webhooks signature is missing, invalid or stale.",
            503: DEPENDENCY_DOWN,
        },
    }
    return refusals[policy]


def policy_security(policy: Policy) -> list[dict[str, list[str]]]:
    """The credentials a policy asks for; alternatives are OR, schemes in one entry AND."""
    from functions.api.middleware.policies import Policy

    security: dict[Policy, list[dict[str, list[str]]]] = {
        Policy.PUBLIC: [],
        # Anonymous, or a key or token that is then checked.
        Policy.OPTIONAL: [{}, {"ApiKey": []}, {"BearerAuth": []}],
        Policy.USER: [{"BearerAuth": []}],
        Policy.ADMIN: [{"ApiKey": [], "BearerAuth": []}],
        Policy.WEBHOOK: [{"WebhookSignature": []}],
    }
    return security[policy]


def security_schemes() -> dict[str, SecurityScheme]:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    return {
        "ApiKey": APIKey(
            in_=APIKeyIn.header,
            name="X-API-Key",
            description="An API key, `bs_<key id>_<secret>`. Optional on /recalls (held to "
            "the key's per-minute limit); with the admin scope, required on /admin and "
            "/monitoring together with an admin access token, from an allowlisted address. "
            "On admin routes a deployment lists in ADMIN_SIGNED_ROUTES (and on any admin "
            "route, if the client chooses) the key is proven, never sent: instead of X-API-Key "
            "send `X-API-Key-Id` (the key id), `X-Signature-Timestamp` (Unix seconds), "
            "`X-Signature-Nonce` (16-64 of `A-Za-z0-9_-`, fresh each request; each is "
            "accepted once) and `X-Signature`: `v2,` and the base64 HMAC-SHA256, keyed by "
            "the SHA-256 of the key's secret, of these lines joined by a line feed: `v2`, "
            "timestamp, nonce, key id, METHOD, path (repeated slashes collapsed, no trailing "
            "slash), canonical query (each decoded name and value percent-encoded, RFC 3986 "
            "unreserved characters kept, the `name=value` strings sorted and joined by `&`), "
            "hex SHA-256 of the body. X-API-Key on a signed route is refused.",
        ),
        "BearerAuth": HTTPBearer(
            bearerFormat="JWT",
            description="An ES256 access token from POST /auth/login; its keys are at "
            "/.well-known/jwks.json.",
        ),
        # OpenAPI names one header per scheme; the other two are in the description.
        "WebhookSignature": APIKey(
            in_=APIKeyIn.header,
            name="webhook-signature",
            description="Standard Webhooks (https://www.standardwebhooks.com/): headers "
            "`webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, "
            "space-separated `v1,<base64 HMAC-SHA256>` entries over "
            "`<webhook-id>.<webhook-timestamp>.<raw body>`, keyed by the shared `whsec_` "
            "secret. A webhook-id already received is refused with 409.",
        ),
    }


def path_parameter_schemas() -> dict[str, dict[str, Any]]:
    """Path parameters the route logic parses itself: exactly what it accepts."""
    from functions.shared.identity.api_keys import KEY_ID_PATTERN

    return {
        # functions/api/recalls/logic.py::parse_recall_id, a PostgreSQL bigint (else 400).
        "recall_id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
        # parse_subscription_id (else 400).
        "subscription_id": {"type": "string", "format": "uuid"},
        # functions/api/admin/keys.py::_key_id (else 404, like an unknown key).
        "key_id": {"type": "string", "pattern": f"^{KEY_ID_PATTERN.pattern}$"},
    }


def validates_input(route: Route, operation: dict[str, Any], app: SecureResolver) -> bool:
    """Whether validation can refuse anything: a body, a parameter outside the path, or a
    path parameter that is not plain text (plain ones the logic parses itself)."""
    enabled = app._enable_validation if route.enable_validation is None else route.enable_validation
    return bool(enabled) and (
        "requestBody" in operation
        or any(
            parameter["in"] != "path" or parameter["schema"].get("type") != "string"
            for parameter in operation.get("parameters", [])
        )
    )


def refusals_of(
    route: Route,
    operation: dict[str, Any],
    policy: Policy,
    app: SecureResolver,
    defaults: Settings,
) -> dict[int, str]:
    """Every refusal an operation can answer, with why; the route's own reasons first."""
    causes: dict[int, list[str]] = {}
    declared = {
        status: response["description"]
        for status, response in (route.responses or {}).items()
        if int(status) >= 400
    }
    sources = [
        declared,
        edge_refusals(route.method, defaults),
        policy_refusals(policy),
        {422: VALIDATION_FAILED} if validates_input(route, operation, app) else {},
    ]
    for source in sources:
        for status, cause in source.items():
            if cause not in causes.setdefault(status, []):
                causes[status].append(cause)
    return {status: " ".join(texts) for status, texts in sorted(causes.items())}


def error_response(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if status in ERROR_HEADERS:
        response["headers"] = copy.deepcopy(ERROR_HEADERS[status])
    return response


def describe_operation(
    route: Route,
    operation: dict[str, Any],
    app: SecureResolver,
    defaults: Settings,
    constraints: dict[str, dict[str, Any]],
) -> None:
    from functions.api.middleware.policies import policy_for

    policy = policy_for(route.openapi_path, defaults)
    security = policy_security(policy)
    if security:
        operation["security"] = security
    refusals = refusals_of(route, operation, policy, app, defaults)
    responses: dict[str, Any] = {}
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            continue  # Powertools' body for it is not the API's: replaced below
        if response.get("content") == {}:
            # A route says "no body" with an empty content map; the document leaves it out.
            response = {key: value for key, value in response.items() if key != "content"}
        responses[status] = response
    for status, description in refusals.items():
        responses[str(status)] = error_response(status, description)
    operation["responses"] = responses
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] in constraints:
            parameter["schema"] = {
                "title": parameter["schema"].get("title"),
                **constraints[parameter["name"]],
            }


def head_operation(get: dict[str, Any]) -> dict[str, Any]:
    """HEAD as the resolver answers it: the GET it stands for, through the same guards,
    with the same status and headers and no body (RFC 9110 9.3.2)."""
    head = copy.deepcopy(get)
    stem = get["operationId"].removesuffix("_get")
    head["operationId"] = f"{stem}_head"
    head["summary"] = f"{get['summary']} (headers only)"
    note = "This path's GET without the body: the same status and headers."
    head["description"] = f"{note} {get['description']}" if "description" in get else note
    head["responses"] = {
        status: {key: value for key, value in response.items() if key != "content"}
        for status, response in head["responses"].items()
    }
    return head


def openapi_document() -> dict[str, Any]:
    from functions.api.app import API_TITLE, API_VERSION, app
    from functions.shared.settings import Settings

    # The deployed defaults (prefixes, limits), not whatever this shell's environment says.
    defaults = Settings()
    constraints = path_parameter_schemas()
    schema = app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description=API_DESCRIPTION,
        security_schemes=security_schemes(),
    )
    document: dict[str, Any] = json.loads(schema)
    all_routes = app._static_routes + app._dynamic_routes
    routes = {(route.method.lower(), route.openapi_path): route for route in all_routes}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            describe_operation(routes[(method, path)], operation, app, defaults, constraints)
        if "get" in item:
            item["head"] = head_operation(item["get"])
    schemas = document["components"]["schemas"]
    schemas["Error"] = copy.deepcopy(ERROR_SCHEMA)
    for name in POWERTOOLS_ERROR_SCHEMAS:
        if f'"#/components/schemas/{name}"' not in json.dumps(document):
            schemas.pop(name, None)
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


# The committed document, wherever the command runs from (a subdirectory too).
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def _run(args: argparse.Namespace) -> int:
    text = render(openapi_document())
    if args.output == "-":
        print(text, end="")
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:  # no such directory, not writable, a directory
            raise CommandError(
                f"cannot write {args.output}: {exc.strerror or exc}",
                hint="pass a file in an existing, writable directory, or --output - for stdout",
            ) from exc
        print(f"wrote {args.output}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "openapi",
        help="write the OpenAPI document",
        description="Write the API's OpenAPI document, generated from its routes and "
        "models (`make openapi`; a test checks docs/openapi.json is current).",
    )
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="file, or - for stdout (default: this checkout's docs/openapi.json, "
        "which it overwrites)",
    )
    parser.set_defaults(func=_run)
