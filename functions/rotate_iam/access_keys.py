"""Rotation of an IAM user's access key, inside IAM's limit of two keys per user.

Value: {"kind": "iam-access-key", "UserName": ..., "AccessKeyId": ...,
"SecretAccessKey": ...}. IAM hands out a secret access key once, at creation,
so the new key is written to AWSPENDING in the very next call: a key whose
secret was never stored is useless to everyone and is deleted on the next try.

The previous key's life after a routine rotation: it stays active through the
overlap window (`overlap_days` from the promotion), so a consumer that read
AWSCURRENT just before the switch keeps working; the daily sweep
(`key_sweep.py`) deactivates it once the window has passed; the next rotation's
createSecret deletes it. An emergency deactivates it in finishSecret (`retire`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from functions.shared.observability import logger
from functions.shared.rotation import clients
from functions.shared.rotation.protocol import RotationError, Rotator, StepContext
from functions.shared.rotation.store import CURRENT, PREVIOUS, SecretValueError, SecretVersion

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

KIND = "iam-access-key"
KEYS_PER_USER = 2  # IAM quota; an inactive key counts against it
# IAM is eventually consistent: a new key can be refused for several seconds.
NOT_YET_VALID = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied"})

StsFactory = Callable[[str, str], "STSClient"]


class KeyLimitReached(RotationError):
    retry_helps = False


class AccessKeyRotator(Rotator):
    def __init__(
        self,
        *,
        iam: IAMClient | None = None,
        sts_factory: StsFactory = clients.sts_with_credentials,
        test_attempts: int = 6,
        first_delay_seconds: float = 1.0,
        max_delay_seconds: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._iam = iam
        self._sts_factory = sts_factory
        self._test_attempts = test_attempts
        self._first_delay = first_delay_seconds
        self._max_delay = max_delay_seconds
        self._sleep = sleep
        self._now = now

    @property
    def iam(self) -> IAMClient:
        return self._iam if self._iam is not None else clients.iam()

    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
        current = _current_if_it_parses(ctx)
        user = _user_name(ctx, current or _previous_for_the_user(ctx))
        self._free_a_slot(ctx, user, current)
        created = self.iam.create_access_key(UserName=user)["AccessKey"]
        value = {
            "kind": KIND,
            "UserName": user,
            "AccessKeyId": created["AccessKeyId"],
            "SecretAccessKey": created["SecretAccessKey"],
        }
        try:
            ctx.store.put_pending(ctx.secret_id, ctx.token, value)
        except Exception:
            # An error does not prove the write failed (the answer may be what was
            # lost): the key is given back only if no pending version holds it, else
            # AWSPENDING would name a deleted key that no retry could test.
            if not _pending_may_hold(ctx, created["AccessKeyId"]):
                self._delete_key(user, created["AccessKeyId"])
            raise

    def set_secret(self, ctx: StepContext) -> None:
        # IAM created the key active in createSecret; there is no service to update.
        ctx.require_pending()

    def test_secret(self, ctx: StepContext) -> None:
        pending = ctx.require_pending().value
        user = str(pending["UserName"])
        expected = self.iam.get_user(UserName=user)["User"]["Arn"]
        sts = self._sts_factory(str(pending["AccessKeyId"]), str(pending["SecretAccessKey"]))
        delay = self._first_delay
        for attempt in range(1, self._test_attempts + 1):
            try:
                identity = sts.get_caller_identity()
            except Exception as exc:
                if clients.error_code(exc) not in NOT_YET_VALID or attempt == self._test_attempts:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            if identity.get("Arn") != expected:
                raise RotationError(f"{ctx.spec.name}: the new key signs as another identity")
            return

    def after_promote(self, ctx: StepContext, previous: SecretVersion) -> None:
        # A routine rotation leaves the previous key active: consumers that read
        # AWSCURRENT before the switch still hold it, and IAM allows two active keys.
        # The daily sweep deactivates it once its overlap window has passed.
        return

    def retire(self, ctx: StepContext, previous: SecretVersion | None) -> None:
        # The leaked key is refused by IAM from now on. It is kept (inactive) for the
        # investigation's last-used data and deleted by the next rotation, which skips
        # the grace window for it. A previous value that does not parse names no key:
        # the next rotation deletes every key no version holds.
        if previous is None:
            return
        old_key = previous.value.get("AccessKeyId")
        if not old_key or old_key == ctx.current().value.get("AccessKeyId"):
            return
        deactivate_access_key(self.iam, _user_name(ctx, previous), str(old_key))

    def _free_a_slot(self, ctx: StepContext, user: str, current: SecretVersion | None) -> None:
        # A current value that does not parse holds no key anyone can use.
        keep = {current.value.get("AccessKeyId")} if current is not None else set()
        # A malformed previous version holds no key: the key it once named (if any)
        # falls under "no version holds it" instead of blocking every rotation.
        previous, _ = ctx.previous()
        previous_key = previous.value.get("AccessKeyId") if previous else None
        in_grace = not ctx.emergency and self._in_grace(ctx)
        if previous_key and in_grace:
            keep.add(previous_key)
        keys = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        remaining = 0
        for key in keys:
            key_id = key["AccessKeyId"]
            if key_id in keep:
                remaining += 1
                continue
            # An older previous key past its grace window, or a key whose secret no
            # version holds (a failed earlier create): nobody may rely on it.
            self._delete_key(user, key_id)
        if remaining >= KEYS_PER_USER:
            raise KeyLimitReached(
                f"{ctx.spec.name}: {user} holds {KEYS_PER_USER} keys and the previous one "
                f"is in its {ctx.spec.overlap_days}-day grace window; retry later or rotate "
                "as an emergency"
            )

    def _in_grace(self, ctx: StepContext) -> bool:
        # From the promotion, not the new version's creation: in a rotation resumed days
        # after its createSecret, the previous key was current until the promotion.
        since = ctx.metadata.current_since()
        if since is None:
            return False
        return self._now() - datetime.fromtimestamp(since, UTC) < timedelta(
            days=ctx.spec.overlap_days
        )

    def _delete_key(self, user: str, key_id: str) -> None:
        try:
            self.iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        except Exception as exc:
            if clients.error_code(exc) != "NoSuchEntity":
                raise


def deactivate_access_key(iam: IAMClient, user: str, key_id: str) -> bool:
    """Set the key Inactive (already so: a no-op); False when the key or user is gone."""
    try:
        iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    except Exception as exc:
        if clients.error_code(exc) != "NoSuchEntity":
            raise
        return False
    return True


def _current_if_it_parses(ctx: StepContext) -> SecretVersion | None:
    """AWSCURRENT, or None when its value is not a key's JSON (a console edit).

    Rotation is how a malformed value gets replaced: such a value holds no key any
    consumer can use, so it must not stop a rotation, an emergency least of all.
    """
    try:
        return ctx.current()
    except SecretValueError as exc:
        logger.warning(
            "current version does not parse; rotating from nothing",
            extra={"secret": ctx.metadata.name, "current_version_id": exc.version_id},
        )
        return None


def _previous_for_the_user(ctx: StepContext) -> SecretVersion:
    """AWSPREVIOUS, to name the user when AWSCURRENT cannot."""
    previous, _ = ctx.previous()
    if previous is None:
        raise RotationError(
            f"{ctx.spec.name}: neither {CURRENT} nor {PREVIOUS} names the IAM user; put a "
            'value with its "UserName" as AWSCURRENT and rotate again'
        )
    return previous


def _user_name(ctx: StepContext, version: SecretVersion) -> str:
    user: Any = version.value.get("UserName")
    if not isinstance(user, str) or not user:
        raise RotationError(f"{ctx.spec.name}: version {version.version_id} names no UserName")
    return user


def _pending_may_hold(ctx: StepContext, key_id: str) -> bool:
    """Whether AWSPENDING may name `key_id`: yes unless a read shows it does not."""
    try:
        pending = ctx.pending()
    except Exception:  # noqa: BLE001 - unknown: keep the key, the next run's cleanup decides
        return True
    return pending is not None and pending.value.get("AccessKeyId") == key_id
