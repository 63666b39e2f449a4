"""Domain errors and their single mapping to HTTP.

Logic raises these; exactly one place (`to_http`) turns them into a status code,
headers and a JSON body. Messages are fixed strings written here, never text
taken from the request, so an error can't echo an attacker's input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error a caller can cause; subclasses fix status and code."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_message: ClassVar[str] = "The request could not be processed."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(DomainError):
    status, code = 400, "bad_request"
    default_message = "The request is malformed."


class RejectedInput(DomainError):
    """Input that looks like an attack; the message never says which rule matched."""

    status, code = 400, "rejected_input"
    default_message = "The request contains input that is not allowed."


class Unauthorized(DomainError):
    """A 401. RFC 9110 requires a challenge on every one: the refusal names its own
    (the API key's, an admin request signature's, the webhook signature's), else the
    bearer token's."""

    status, code = 401, "unauthorized"
    default_message = "Authentication is required."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(message, headers={**BEARER_CHALLENGE, **(headers or {})})


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="babyshield"'}
API_KEY_CHALLENGE = {"WWW-Authenticate": 'ApiKey realm="babyshield", header="X-API-Key"'}
WEBHOOK_CHALLENGE = {"WWW-Authenticate": 'Webhook-Signature realm="babyshield"'}
# An admin route in ADMIN_SIGNED_ROUTES refuses X-API-Key: its 401 names the headers
# of the request signature that proves the key instead (api/middleware/admin_chain.py).
ADMIN_SIGNATURE_CHALLENGE = {
    "WWW-Authenticate": 'ApiKey-Signature realm="babyshield", '
    'headers="X-API-Key-Id X-Signature-Timestamp X-Signature-Nonce X-Signature"'
}


class Forbidden(DomainError):
    status, code = 403, "forbidden"
    default_message = "Access denied."


class NotFound(DomainError):
    status, code = 404, "not_found"
    default_message = "Not found."


class MethodNotAllowed(DomainError):
    status, code = 405, "method_not_allowed"
    default_message = "Method not allowed."

    def __init__(self, allowed: list[str]):
        super().__init__(headers={"Allow": ", ".join(sorted(set(allowed)))})


class Conflict(DomainError):
    status, code = 409, "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaType(DomainError):
    status, code = 415, "unsupported_media_type"
    default_message = "The request body must be application/json."


class ValidationFailed(DomainError):
    status, code = 422, "validation_error"
    default_message = "The request failed validation."

    def __init__(self, fields: list[str], problems: list[dict[str, str]] | None = None):
        super().__init__()
        self.fields = fields
        self.problems = problems or []

    @classmethod
    def from_errors(cls, errors: Iterable[Mapping[str, Any]]) -> ValidationFailed:
        """From pydantic's error list: where each failure is and what kind it is in our
        own words (problem_of), never its input or pydantic's message; for an unexpected
        field even the name is the caller's, so only the part of the request it was in
        is kept."""
        found = set()
        for item in errors:
            kind = str(item.get("type", ""))
            loc = [str(part) for part in item.get("loc", ())]
            if kind == "extra_forbidden":
                loc = loc[:1]
            found.add((".".join(loc), problem_of(kind)))
        problems = [{"field": where, "problem": what} for where, what in sorted(found)]
        return cls(sorted({where for where, _ in found}), problems)


# What a client is told of a validation failure: a fixed phrase per kind of pydantic
# error (https://docs.pydantic.dev/latest/errors/validation_errors/), so nothing of the
# input or of pydantic's wording reaches the answer.
PROBLEMS = {
    "missing": "required",
    "extra_forbidden": "has a field this request does not take",
    "literal_error": "not one of the allowed values",
    "enum": "not one of the allowed values",
    "string_pattern_mismatch": "not in the expected format",
    "json_invalid": "not valid JSON",
    "timezone_aware": "needs a time zone",
}


def problem_of(kind: str) -> str:
    if kind in PROBLEMS:
        return PROBLEMS[kind]
    if kind.endswith(("_type", "_parsing")):
        return "of the wrong type or form"
    if kind.endswith(("too_long", "too_short")):
        return "of the wrong length"
    if kind.startswith(("greater_than", "less_than", "multiple_of")):
        return "out of range"
    return "not a valid value"


class TooManyRequests(DomainError):
    status, code = 429, "too_many_requests"
    default_message = "Too many requests."

    def __init__(self, retry_after_seconds: int):
        super().__init__(headers={"Retry-After": str(max(1, int(retry_after_seconds)))})


class HeadersTooLarge(DomainError):
    status, code = 431, "headers_too_large"
    default_message = "Request headers are too large."


class ServiceUnavailable(DomainError):
    status, code = 503, "service_unavailable"
    default_message = "The service is temporarily unavailable."


@dataclass(frozen=True)
class HttpError:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def to_http(error: DomainError, correlation_id: str | None = None) -> HttpError:
    """The one mapping from a domain error to an HTTP answer."""
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, ValidationFailed) and error.fields:
        payload["fields"] = error.fields
        payload["problems"] = error.problems
    if correlation_id:
        payload["correlation_id"] = correlation_id
    return HttpError(status=error.status, body={"error": payload}, headers=dict(error.headers))


def internal_error(correlation_id: str | None) -> HttpError:
    """The answer to an unexpected exception: a correlation id, nothing else."""
    payload: dict[str, Any] = {"code": "internal_error", "message": "Internal server error."}
    if correlation_id:
        payload["correlation_id"] = correlation_id
    return HttpError(status=500, body={"error": payload})
