"""Audit trail of authentication decisions: a JSON log line for every decision, an
EMF metric for every failure and, for admin access, a row in `audit_log`.

What goes in: the action, the outcome, a reason category, user ids and key ids,
and the source IP. What never goes in: tokens, passwords, API keys, secrets,
emails. Callers pass only those safe fields; there is no free-form payload.
"""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared import names
from functions.shared.observability import logger, metrics

# How long an audit row waits for a database connection. The log line is written
# first and the decision never depends on the row, so a refusal while the database
# is down answers in about this long instead of the pool's full timeout.
AUDIT_WRITE_WAIT_SECONDS = 1.0

# A credential pasted where an id goes (an operator revoking a key by its whole text,
# `/admin/api-keys/bs_…/revoke`) reaches the audit trail through the path: the shapes
# of an API key, a JWT and a webhook secret are cut out of every detail written.
# Each shape starts a token (nothing of its alphabet before it): `monkeyJ.a.b` is no
# JWT, and a long run of `eyJ` costs one scan, not one per position.
_CREDENTIAL_SHAPES = re.compile(
    r"(?<![A-Za-z0-9_-])"
    r"(?:bs_[0-9a-f]{16}_[A-Za-z0-9_-]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|whsec_[A-Za-z0-9+/=_-]+)"
)
REDACTED = "[redacted]"

# Failure metric per action; the alarms and dashboards read these names.
FAILURE_METRICS: dict[str, str] = {
    "sign_in": names.METRIC_FAILED_SIGNINS,
    "token": names.METRIC_TOKEN_VALIDATION_ERRORS,
    "api_key": "ApiKeyRejections",
    "rate_limit": "RateLimitedRequests",
    "webhook": "WebhookRejections",
    "admin_access": "AdminAccessDenied",
}


def failure_metric(action: str, reason: str | None) -> str | None:
    """The metric a failed decision counts in, if any.

    A sign-in refused because its account is locked counts apart: the lock refuses
    the owner's right password as well, so it is no evidence of guessing, and the
    failed-sign-in alarm, which starts the WAF responder, counts only what the
    responder counts (names.SIGN_IN_EVIDENCE_REASONS).
    """
    if action == "sign_in" and reason == names.SIGN_IN_ACCOUNT_LOCKED:
        return names.METRIC_SIGN_INS_REFUSED_LOCKED
    return FAILURE_METRICS.get(action)


def audit(
    action: str,
    outcome: str,
    *,
    source_ip: str | None,
    reason: str | None = None,
    user_id: UUID | None = None,
    key_id: str | None = None,
    persist: bool = False,
    row_on: Any = None,
    **detail: str | int | None,
) -> None:
    """Record one decision. `outcome` is 'success' or 'failure' (or 'denied').

    With `row_on` (a connection inside the transaction of the change recorded), only
    the audit_log row is written, there: the change and its row commit together or
    not at all. The caller logs the line with a second call once the change is made.
    """
    detail = _without_credentials(detail)
    if row_on is not None:
        _persist(action, outcome, source_ip, user_id, key_id, reason, detail, on=row_on)
        return
    fields: dict[str, Any] = {
        "audit": True,
        "auth_event": f"{action}_{'succeeded' if outcome == 'success' else 'failed'}",
        "action": action,
        "outcome": outcome,
        "reason": reason,
        "user_id": str(user_id) if user_id else None,
        "key_id": key_id,
        "source_ip": source_ip,
        **detail,
    }
    fields = {name: value for name, value in fields.items() if value is not None}
    if outcome == "success":
        logger.info("authentication decision", extra=fields)
    else:
        logger.warning("authentication decision", extra=fields)
        metric = failure_metric(action, reason)
        if metric:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    if persist:
        _persist(action, outcome, source_ip, user_id, key_id, reason, detail)


def record_admin_action(
    action: str, *, actor: UUID, source_ip: str | None, **detail: str | int | None
) -> None:
    """An admin change (a block, an unblock) as an audit_log row and a log line."""
    detail = _without_credentials(detail)
    logger.info(
        "admin action",
        extra={
            "audit": True,
            "action": action,
            "user_id": str(actor),
            "source_ip": source_ip,
            **{k: v for k, v in detail.items() if v is not None},
        },
    )
    _persist(action, "success", source_ip, actor, None, None, detail)


def record_refused_change(
    action: str,
    *,
    reason: str,
    actor: UUID,
    source_ip: str | None,
    key_id: str | None = None,
    detail: dict[str, str | int | None],
) -> None:
    """An admin change the API refused (a 4xx), as an audit_log row of outcome
    `failure` and a log line: what was asked, by whom, and the refusal's code."""
    detail = _without_credentials(detail)
    logger.warning(
        "admin change refused",
        extra={
            "audit": True,
            "action": action,
            "outcome": "failure",
            "reason": reason,
            "user_id": str(actor),
            "key_id": key_id,
            "source_ip": source_ip,
            **{k: v for k, v in detail.items() if v is not None},
        },
    )
    _persist(action, "failure", source_ip, actor, key_id, reason, detail)


def without_credentials(text: str) -> str:
    """`text` with every API-key, JWT and webhook-secret shape cut out."""
    return _CREDENTIAL_SHAPES.sub(REDACTED, text)


def _without_credentials(detail: dict[str, str | int | None]) -> dict[str, str | int | None]:
    return {
        name: without_credentials(value) if isinstance(value, str) else value
        for name, value in detail.items()
    }


def _persist(
    action: str,
    outcome: str,
    source_ip: str | None,
    user_id: UUID | None,
    key_id: str | None,
    reason: str | None,
    detail: dict[str, str | int | None],
    *,
    on: Any = None,
) -> None:
    """The decision's audit_log row: on `on`, the transaction of the change it records
    (a failure is that change's), or else in a session of its own, whose failure is
    logged and changes nothing."""
    from functions.shared.db import write_session

    row_detail = {name: value for name, value in detail.items() if value is not None}
    if reason:
        row_detail["reason"] = reason
    if key_id:
        row_detail["key_id"] = key_id
    statement = (
        "INSERT INTO public.audit_log (actor, action, outcome, source_ip, detail) "
        "VALUES (%s, %s, %s, %s, %s::jsonb)"
    )
    values = (
        str(user_id) if user_id else None,
        action,
        outcome,
        _valid_ip(source_ip),
        json.dumps(row_detail),
    )
    if on is not None:
        on.execute(statement, values)
        return
    try:
        with write_session(user_id=None, wait_seconds=AUDIT_WRITE_WAIT_SECONDS) as conn:
            conn.execute(statement, values)
    except Exception:  # noqa: BLE001 - any failure here must not change the decision
        # The refusal stands whether or not the row could be written; the log line
        # above already carries the decision.
        logger.exception("audit row not written", extra={"action": action})


def _valid_ip(source_ip: str | None) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(source_ip or ""))
    except ValueError:
        return None
