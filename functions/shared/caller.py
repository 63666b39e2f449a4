"""Who is calling: the identity layer fills this, the data layer scopes by it.

Routes read the caller from the resolver context (`app.context["caller"]`), never from
a header, so the identity layer (JWT, API keys) decides it in one place. RLS in the
database receives `user_id` and `role` through `functions.shared.db` sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

CALLER_CONTEXT_KEY = "caller"

CallerRole = Literal["user", "admin"]
CallerKind = Literal["jwt", "api_key", "test"]


@dataclass(frozen=True)
class Caller:
    user_id: UUID
    role: CallerRole
    kind: CallerKind
