"""What the admin routes do, without the HTTP framework: keys, users, WAF blocks.

Every operation takes the caller the admin chain authenticated and refuses
anyone who is not an admin, so a route that forgets its own check still cannot
act for a user. The route modules (functions/api/routes/admin_*.py) only map
these to HTTP.
"""

from __future__ import annotations

from functions.shared.caller import Caller
from functions.shared.errors import Forbidden


def require_admin(caller: Caller) -> Caller:
    if caller.role != "admin":
        raise Forbidden()
    return caller
