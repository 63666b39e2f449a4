"""The audit line written whenever code reads a secret value.

Who read which secret at which stage is what an investigator needs after a
leak; the value itself must never reach a log, so this module is handed
nothing but names.
"""

from __future__ import annotations

from functions.shared.observability import logger

AUDIT_EVENT = "secret_read"


def audit_secret_read(secret: str, stage: str | None, caller: str, version_id: str | None) -> None:
    """One structured line: secret name, stage, version id and the reading caller."""
    logger.info(
        "secret value read",
        extra={
            "audit_event": AUDIT_EVENT,
            "secret": secret,
            "stage": stage,
            "version_id": version_id,
            "caller": caller,
        },
    )
