"""One boto3 session per process, from which the functions build their clients.

Every `boto3.session.Session()` loads botocore's endpoint, partition and retry
data again: about 50 ms for each client after the first in a cold start, which
an authenticated API request pays twice (Secrets Manager for the database
login, DynamoDB for the key's rate limit). Clients built from one session share
what it has loaded. A session is not thread-safe, so clients are created under
a lock; the clients themselves are thread-safe and are cached by their callers.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3

_lock = threading.Lock()
_session: boto3.session.Session | None = None


def new_client(service: str, **options: Any) -> Any:
    """A new client for `service` (boto3 `client()` options) from the shared session."""
    global _session
    with _lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session.client(service, **options)  # type: ignore[call-overload]
