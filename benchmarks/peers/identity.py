"""The API-key check both peers run on `/recalls`, built from our identity code.

The same steps as functions/api/middleware/authentication.py::_key_caller:
parse, look the key up in PostgreSQL, compare the SHA-256 in constant time,
check the scope, count the request against the key's limit in DynamoDB, audit.
Sharing it keeps the I/O identical, so the benchmarks compare frameworks.
"""

from __future__ import annotations

from functions.shared.errors import Forbidden, Unauthorized


def check_key(raw: str, source_ip: str) -> None:
    from functions.api.identity.audit import audit
    from functions.api.identity.store import api_key_record
    from functions.api.middleware.authentication import enforce_key_rate_limit
    from functions.shared.identity.api_keys import (
        SCOPE_RECALLS_READ,
        ApiKeyRejected,
        check_api_key,
    )

    try:
        record = check_api_key(raw, api_key_record)
    except ApiKeyRejected as rejected:
        audit("api_key", "failure", reason=rejected.reason, source_ip=source_ip)
        raise Unauthorized() from rejected
    if SCOPE_RECALLS_READ not in record.scopes:
        audit("api_key", "failure", reason="missing_scope", source_ip=source_ip)
        raise Forbidden()
    enforce_key_rate_limit(record, source_ip)
    audit("api_key", "success", key_id=record.key_id, user_id=record.owner_id, source_ip=source_ip)
