"""How old each inventory secret is, for `babyshield secrets` and the SecretAgeDays metric.

A secret's age is the age of its AWSCURRENT value: since it took over, the later
of its version's creation and its promotion (a rotation stopped at AWSPENDING and
finished days later is as old as its finish, from which Secrets Manager schedules
the next). Secrets Manager's LastRotatedDate is not used because a rotation played
by the local driver (and a manual PutSecretValue) does not set it.

Beside the age, each secret's rotation settings are held to the inventory, as CDK
deploys them: rotation on, at least every `period_days`, by the secret's own
rotation function. One switched off, stretched or re-pointed in the console leaves
a fresh secret that would otherwise look healthy until the day it is overdue.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.shared import names
from functions.shared.inventory import API_KEY_PERIOD_DAYS, INVENTORY, SecretSpec
from functions.shared.observability import logger, metrics
from functions.shared.rotation import clients
from functions.shared.rotation.store import CURRENT, PREVIOUS, SecretMetadata, SecretStore

if TYPE_CHECKING:
    from functions.shared.identity.webhook_signers import SignerState

# A rotation runs for seconds to minutes; one unfinished for longer stopped halfway.
STUCK_AFTER = timedelta(hours=1)
# A rate() schedule as Secrets Manager takes it: in days or hours, nothing finer.
_RATE = re.compile(r"rate\((\d+) (days?|hours?)\)")


@dataclass(frozen=True)
class SecretAge:
    name: str
    kind: str
    period_days: int
    last_rotated: datetime | None
    age_days: float | None
    next_due: datetime | None
    overdue: bool
    # Why no age could be read (the secret does not exist yet, access denied...).
    problem: str | None = None
    # A version holding AWSPENDING: a rotation running now, or one that stopped
    # halfway and blocks the next until it is resumed or cancelled.
    pending: str | None = None
    # That rotation has been unfinished for over STUCK_AFTER.
    stuck: bool = False
    # Why Secrets Manager will not rotate it as the inventory says (rotation_problem()).
    rotation_problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "period_days": self.period_days,
            "last_rotated": _iso(self.last_rotated),
            "age_days": self.age_days,
            "next_due": _iso(self.next_due),
            "overdue": self.overdue,
            "pending_version": self.pending,
            "stuck": self.stuck,
            "problem": self.problem,
            "rotation_problem": self.rotation_problem,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def secret_age(store: SecretStore, item: SecretSpec, now: datetime | None = None) -> SecretAge:
    moment = now or datetime.now(UTC)
    try:
        metadata = store.describe(item.secret_name)
    except (ClientError, BotoCoreError) as exc:
        problem = clients.error_code(exc) or type(exc).__name__
        # A secret that cannot be read is treated as overdue: silence must not look healthy.
        return SecretAge(item.name, item.kind, item.period_days, None, None, None, True, problem)
    pending = metadata.unfinished_rotation()
    stuck = _stuck(metadata, pending, moment)
    rotation = rotation_problem(metadata, item)

    def without_age(problem: str) -> SecretAge:
        # No age to report, which counts as overdue: silence must not look healthy.
        return SecretAge(
            item.name,
            item.kind,
            item.period_days,
            None,
            None,
            None,
            True,
            problem,
            pending,
            stuck,
            rotation,
        )

    if metadata.deleted_at is not None:
        # DescribeSecret still answers, but no value can be read: every consumer fails.
        deleted = _iso(datetime.fromtimestamp(metadata.deleted_at, UTC))
        return without_age(f"marked for deletion at {deleted}")
    since = metadata.current_since()
    if since is None:
        return without_age("no AWSCURRENT")
    last = datetime.fromtimestamp(since, UTC)
    age_days = round((moment - last).total_seconds() / 86400, 2)
    next_due = last + timedelta(days=item.period_days)
    return SecretAge(
        item.name,
        item.kind,
        item.period_days,
        last,
        age_days,
        next_due,
        moment >= next_due,
        pending=pending,
        stuck=stuck,
        rotation_problem=rotation,
    )


def rotation_problem(metadata: SecretMetadata, item: SecretSpec) -> str | None:
    """What in the secret's rotation settings differs from what CDK deploys for it
    (cdk/secrets.py) so that Secrets Manager will not rotate it in time, or None.

    A schedule shorter than the period rotates more often than the inventory asks:
    the age stays within the period, and nothing needs on-call.
    """
    if not metadata.rotation_enabled:
        return "rotation disabled"
    found = [_schedule_problem(metadata, item), _function_problem(metadata, item)]
    return "; ".join(problem for problem in found if problem) or None


def _schedule_problem(metadata: SecretMetadata, item: SecretSpec) -> str | None:
    period = item.period_days
    expression = metadata.rotation_schedule
    if expression is not None:
        rate = _RATE.fullmatch(expression.strip())
        if rate is None:
            # A cron() schedule, which CDK never writes: it can leave months between
            # rotations, and reading it is on-call's.
            return f"rotates on {expression}, inventory says every {period} days"
        count, unit = int(rate[1]), rate[2]
        if unit.startswith("day"):
            return (
                None if count <= period else f"rotates every {count} days, inventory says {period}"
            )
        if count <= period * 24:
            return None
        return f"rotates every {count} hours, inventory says {period} days"
    days = metadata.rotation_after_days
    if days is None:
        return f"rotation enabled without a schedule, inventory says every {period} days"
    return None if days <= period else f"rotates every {days} days, inventory says {period}"


def _function_problem(metadata: SecretMetadata, item: SecretSpec) -> str | None:
    found = metadata.rotation_function_arn
    if found is None:
        # Only the local stack has rotation on without a function: its driver plays
        # Secrets Manager there, and moto would invoke a function it was given. In AWS
        # a secret cannot be rotated without one.
        return None
    expected = _rotation_function_arn(metadata.arn, item)
    if expected is None or found == expected:
        return None
    return f"rotated by {found}, not {expected}"


def _rotation_function_arn(secret_arn: str, item: SecretSpec) -> str | None:
    """The unqualified ARN of the secret's rotation function as CDK deploys it: named
    after its method, in the secret's own partition, region and account (a function
    of the same name elsewhere is someone else's). None when `secret_arn` is no ARN."""
    parts = secret_arn.split(":")
    if len(parts) < 7 or parts[0] != "arn":
        return None
    partition, region, account = parts[1], parts[3], parts[4]
    function = names.function_name(item.method)
    return f"arn:{partition}:lambda:{region}:{account}:function:{function}"


def _stuck(metadata: SecretMetadata, pending: str | None, moment: datetime) -> bool:
    """Whether the unfinished rotation `pending` started over STUCK_AFTER ago (its
    version's creation; an unknown start counts as stuck)."""
    if pending is None:
        return False
    started = metadata.created.get(pending)
    return started is None or moment - datetime.fromtimestamp(started, UTC) > STUCK_AFTER


def api_key_ages(now: datetime | None = None) -> list[SecretAge]:
    """Every live partner API key not rotated yet, with its age, flagged once past
    API_KEY_PERIOD_DAYS. A key with a successor is rotated already: it lives out its
    grace window and cannot be rotated again; its successor is listed.

    Read through the read-only tier as an admin caller: row-level security shows a
    caller only its own keys, and this report is about all of them. Only ids and
    dates are read, never a key's hash.
    """
    from uuid import UUID

    from functions.shared.db import readonly_session

    moment = now or datetime.now(UTC)
    with readonly_session(user_id=UUID(int=0), role="admin") as conn:
        rows = conn.execute(
            # Live as functions/shared/identity/api_keys.py::check_api_key decides it.
            "SELECT k.key_id, k.created_at FROM public.api_keys AS k "
            "WHERE (k.revoked_at IS NULL OR k.revoked_at > now()) "
            "AND (k.expires_at IS NULL OR k.expires_at > now()) "
            "AND NOT EXISTS (SELECT 1 FROM public.api_keys AS s WHERE s.rotated_from = k.key_id) "
            "ORDER BY k.created_at, k.key_id"
        ).fetchall()
    ages = []
    for key_id, created_at in rows:
        next_due = created_at + timedelta(days=API_KEY_PERIOD_DAYS)
        ages.append(
            SecretAge(
                name=f"api-key/{key_id}",
                kind="api-key",
                period_days=API_KEY_PERIOD_DAYS,
                last_rotated=created_at,
                age_days=round((moment - created_at).total_seconds() / 86400, 2),
                next_due=next_due,
                overdue=moment >= next_due,
            )
        )
    return ages


def secret_ages(store: SecretStore | None = None, now: datetime | None = None) -> list[SecretAge]:
    store = store or SecretStore(caller="secret-age")
    return [secret_age(store, item, now) for item in INVENTORY]


def publish_secret_ages(
    store: SecretStore | None = None, now: Callable[[], datetime] | None = None
) -> dict[str, Any]:
    """One SecretAgeDays datapoint per secret (dimension `secret`), flushed one by
    one, then one SecretsOverdue, one RotationsStuck and one RotationSettingsDrift
    datapoint for the run (the last counts secrets whose rotation is off, scheduled
    less often than their period, or by another function), and one
    WebhookFeedOnPreviousSecret (1: the feed has not been given the webhook secret's
    current value: its last accepted delivery was signed with AWSPREVIOUS, and the
    next rotation would be refused for it, or with a version no longer accepted, as
    after an emergency rotation, and its deliveries are refused).

    Each flush carries one secret's dimension; a single flush would put every
    datapoint under the same dimensions. A secret without an age gets no age
    datapoint (the dashboard shows a gap) and counts as overdue: the overdue alarm
    (cdk/detection.py) fires on the count, and on days with no run at all.
    """
    store = store or SecretStore(caller="secret-age")
    ages = secret_ages(store, now() if now else None)
    for age in ages:
        if age.age_days is None:
            logger.warning(
                "secret age unavailable", extra={"secret": age.name, "problem": age.problem}
            )
            continue
        metrics.add_dimension(name="secret", value=age.name)
        metrics.add_metric(name=names.METRIC_SECRET_AGE_DAYS, unit="Count", value=age.age_days)
        metrics.flush_metrics()
    pending = [age.name for age in ages if age.pending]
    if pending:
        # The daily run rarely meets a rotation in progress; a stuck one blocks the next.
        logger.warning("secrets with a rotation pending", extra={"secrets": pending})
    stuck = [age.name for age in ages if age.stuck]
    metrics.add_metric(name=names.METRIC_ROTATIONS_STUCK, unit="Count", value=len(stuck))
    drift = {age.name: age.rotation_problem for age in ages if age.rotation_problem}
    # Its own count, not SecretsOverdue's: nothing is overdue yet, and what on-call
    # does differs (RUNBOOK, "Rotation switched off or re-scheduled").
    metrics.add_metric(name=names.METRIC_ROTATION_SETTINGS_DRIFT, unit="Count", value=len(drift))
    if drift:
        logger.warning("rotation settings differ from the inventory", extra={"secrets": drift})
    overdue = [age.name for age in ages if age.overdue]
    metrics.add_metric(name=names.METRIC_SECRETS_OVERDUE, unit="Count", value=len(overdue))
    feed_on_previous = _feed_on_previous(store)
    if feed_on_previous is not None:
        metrics.add_metric(
            name=names.METRIC_WEBHOOK_FEED_ON_PREVIOUS, unit="Count", value=int(feed_on_previous)
        )
    metrics.flush_metrics()
    if overdue:
        logger.warning("secrets overdue for rotation", extra={"secrets": overdue})
    return {
        "secrets": len(ages),
        "overdue": overdue,
        "stuck": stuck,
        "rotation_drift": list(drift),
        "feed_on_previous": feed_on_previous,
    }


# An inventory name, not a secret.
FEED_SIGNING_SECRET = "webhook-signing-secret"  # noqa: S105  # nosec B105  # pragma: allowlist secret


def feed_signer(store: SecretStore) -> SignerState:
    """When each live version of the webhook secret last signed a delivery the API
    accepted (functions/shared/identity/webhook_signers.py records them)."""
    from functions.shared.inventory import spec

    return signer_of(store.describe(spec(FEED_SIGNING_SECRET).secret_name))


def signer_of(metadata: SecretMetadata) -> SignerState:
    """feed_signer for the webhook secret's metadata, when it is read already."""
    from functions.shared.identity.webhook_signers import signer_state

    return signer_state(metadata.version_with(CURRENT), metadata.version_with(PREVIOUS))


def _feed_on_previous(store: SecretStore) -> bool | None:
    """Whether the feed's last accepted delivery was signed with another version than
    AWSCURRENT (AWSPREVIOUS, or one a rotation retired since), for its daily
    datapoint; None (no datapoint) when that cannot be read."""
    try:
        state = feed_signer(store)
    except Exception as exc:  # noqa: BLE001 - one missing datapoint, not a failed run
        logger.warning("webhook feed signer unknown", extra={"error": type(exc).__name__})
        return None
    if state.sender_on_retired:
        # After an emergency rotation: its deliveries are 401s, which page no one else.
        logger.warning(
            "the feed's last accepted delivery was signed with a webhook secret no longer "
            "accepted: its deliveries are refused; give it the current one",
            extra={"signed_with_version": state.last_version},
        )
    elif state.sender_on_old_secret:
        logger.warning(
            "the feed still signs with the previous webhook secret: give it the current one",
            extra={"previous_version": state.previous_version},
        )
    return state.sender_on_old_secret
