"""How old each inventory secret is, for `babyshield secrets` and the SecretAgeDays metric.

A secret's age is the age of its AWSCURRENT value: since it took over, the later
of its version's creation and its promotion (a rotation stopped at AWSPENDING and
finished days later is as old as its finish, from which Secrets Manager schedules
the next). Secrets Manager's LastRotatedDate is not used because a rotation played
by the local driver (and a manual PutSecretValue) does not set it.
"""

from __future__ import annotations

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
    if metadata.deleted_at is not None:
        # DescribeSecret still answers, but no value can be read: every consumer fails.
        deleted = _iso(datetime.fromtimestamp(metadata.deleted_at, UTC))
        problem = f"marked for deletion at {deleted}"
        return SecretAge(
            item.name, item.kind, item.period_days, None, None, None, True, problem, pending, stuck
        )
    since = metadata.current_since()
    if since is None:
        return SecretAge(
            item.name,
            item.kind,
            item.period_days,
            None,
            None,
            None,
            True,
            "no AWSCURRENT",
            pending,
            stuck,
        )
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
    )


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
    one, then one SecretsOverdue and one RotationsStuck datapoint for the run, and one
    WebhookFeedOnPreviousSecret (1: the feed has not been given the webhook secret's
    current value, and the next rotation would be refused for it).

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
    """Whether the feed still signs with AWSPREVIOUS, for its daily datapoint; None
    (no datapoint) when that cannot be read."""
    try:
        state = feed_signer(store)
    except Exception as exc:  # noqa: BLE001 - one missing datapoint, not a failed run
        logger.warning("webhook feed signer unknown", extra={"error": type(exc).__name__})
        return None
    if state.sender_on_previous:
        logger.warning(
            "the feed still signs with the previous webhook secret: give it the current one",
            extra={"previous_version": state.previous_version},
        )
    return state.sender_on_previous
