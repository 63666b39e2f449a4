"""The authenticated caller, as the identity layer hands it to the routes."""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.shared.caller import Caller

WEBHOOK_CONTEXT_KEY = "webhook"


@dataclass(frozen=True)
class AuthenticatedCaller(Caller):
    """A `Caller` plus what authenticated it: the API key (id and scopes) if one was used.

    A subclass, so every route that asks for a `Caller` accepts it unchanged.
    """

    key_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
