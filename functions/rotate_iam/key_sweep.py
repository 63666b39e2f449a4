"""The daily sweep that ends the overlap window of the IAM access keys.

A routine rotation leaves the previous key active (`AccessKeyRotator.after_promote`),
so a consumer that read AWSCURRENT just before the switch, or got the key out of
band, keeps working. Once `overlap_days` have passed since the current key took over
(`SecretMetadata.current_since`: the later of its creation and its promotion), this sweep
deactivates the key AWSPREVIOUS names; the next rotation's createSecret deletes it.

It also deactivates an active key of the secret's user that no version names and
that is older than `UNNAMED_KEY_GRACE`: the key of a rotation cancelled after its
createSecret (`babyshield rotate NAME --cancel`, or Secrets Manager's
CancelRotateSecret, which switches rotation off and leaves AWSPENDING on the
version), or one made by hand. Nobody can have read its secret from the secret, so
it is nobody's to rely on; left active it would work until the next rotation
deletes it, weeks later (never, with rotation off). A rotation in flight (AWSPENDING
set, rotation on) is left to its own steps, and the grace covers the moment between
a createSecret's CreateAccessKey and its write of AWSPENDING.

An EventBridge rule invokes rotate_iam once a day with `SWEEP_EVENT` as its input
(cdk/secrets.py). Each secret is swept on its own: a failure is logged and the
others are still swept, then the invocation fails, so that Lambda retries it and
then sends it to the sweep's dead-letter queue, whose alarm pages on-call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from functions.rotate_iam.access_keys import deactivate_access_key
from functions.shared.inventory import INVENTORY, SecretSpec
from functions.shared.observability import logger
from functions.shared.rotation import clients
from functions.shared.rotation.store import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretMetadata,
    SecretStore,
    SecretValueError,
)

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_iam.type_defs import AccessKeyMetadataTypeDef

# The scheduled rule's constant input. Only exactly this is the sweep: any other
# event is a rotation step's and goes through the rotation gate.
SWEEP_EVENT: Final[Mapping[str, str]] = {"babyshield": "deactivate-previous-iam-keys"}
READER = "rotate_iam:sweep"
# Far longer than a createSecret takes between creating a key and storing it.
UNNAMED_KEY_GRACE: Final = timedelta(hours=1)


def is_sweep_event(event: object) -> bool:
    return isinstance(event, dict) and event == SWEEP_EVENT


def swept_specs() -> tuple[SecretSpec, ...]:
    return tuple(
        item for item in INVENTORY if item.kind == "iam-access-key" and item.method == "rotate_iam"
    )


class SweepFailed(Exception):
    """One or more secrets could not be swept (named; the others were)."""


class PreviousKeySweep:
    def __init__(
        self,
        *,
        store: SecretStore | None = None,
        iam: IAMClient | None = None,
        specs: Sequence[SecretSpec] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._store = store or SecretStore(caller=READER)
        self._iam = iam
        self._specs = swept_specs() if specs is None else tuple(specs)
        self._now = now

    @property
    def iam(self) -> IAMClient:
        return self._iam if self._iam is not None else clients.iam()

    def run(self) -> dict[str, Any]:
        """Sweep every secret; raise SweepFailed at the end if any could not be."""
        deactivated: list[str] = []
        failed: list[str] = []
        for item in self._specs:
            try:
                if self._sweep(item):
                    deactivated.append(item.name)
            except Exception as exc:  # noqa: BLE001 - the others are still swept
                logger.warning(
                    "previous access key sweep failed",
                    extra={
                        "secret": item.secret_name,
                        "error": type(exc).__name__,
                        "error_code": clients.error_code(exc),
                    },
                )
                failed.append(item.name)
        if failed:
            raise SweepFailed(
                f"previous access key sweep failed for {', '.join(failed)}; "
                "every other secret was swept"
            )
        return {"outcome": "swept", "deactivated": deactivated}

    def _sweep(self, item: SecretSpec) -> bool:
        """Deactivate what `item` no longer needs active; True if it deactivated a key."""
        metadata = self._store.describe(item.secret_name)
        if metadata.deleted_at is not None:
            # Marked for deletion: its values cannot be read.
            return False
        current_id = metadata.version_with(CURRENT)
        current = self._read(metadata, CURRENT, current_id) if current_id else None
        current_key = current.get("AccessKeyId") if current is not None else None
        if current is None or not isinstance(current_key, str) or not current_key:
            # Nothing replaces the previous key: it stays until a rotation replaces
            # the current value (which deletes it past its window).
            return False
        previous_id = metadata.version_with(PREVIOUS)
        # Read by the version ids this DescribeSecret found, not by stage: a rotation
        # promoted meanwhile makes AWSPREVIOUS the key that was current a moment ago,
        # while the previous version found here is past its window whatever came since.
        previous = self._read(metadata, PREVIOUS, previous_id) if previous_id else None
        ended = previous_id is not None and self._end_the_overlap(
            item, metadata, current_key, current_id, previous_id, previous
        )
        unnamed = self._deactivate_unnamed_keys(metadata, current, previous)
        return ended or unnamed

    def _end_the_overlap(
        self,
        item: SecretSpec,
        metadata: SecretMetadata,
        current_key: str,
        current_id: str | None,
        previous_id: str,
        previous: dict[str, Any] | None,
    ) -> bool:
        """Deactivate the previous version's key once its window has passed."""
        since = metadata.current_since()
        if since is None or self._now() - datetime.fromtimestamp(since, UTC) < timedelta(
            days=item.overlap_days
        ):
            return False
        if previous is None:
            return False
        old_key, user = previous.get("AccessKeyId"), previous.get("UserName")
        if not isinstance(old_key, str) or not old_key or old_key == current_key:
            return False
        if not isinstance(user, str) or not user:
            logger.warning(
                "previous version names no UserName; its key is left as it is",
                extra={"secret": metadata.name, "previous_version_id": previous_id},
            )
            return False
        # Deleted meanwhile (a rotation past the window): nothing left to deactivate.
        if not self._active(user, old_key) or not deactivate_access_key(self.iam, user, old_key):
            return False
        logger.info(
            "previous access key deactivated: its overlap window has passed",
            extra={
                "secret": metadata.name,
                "previous_version_id": previous_id,
                "current_version_id": current_id,
                "user": user,
                # An identifier IAM shows and CloudTrail logs, never the secret key.
                "access_key_id": old_key,
                "overlap_days": item.overlap_days,
                "current_since": datetime.fromtimestamp(since, UTC).isoformat(),
            },
        )
        return True

    def _deactivate_unnamed_keys(
        self,
        metadata: SecretMetadata,
        current: dict[str, Any],
        previous: dict[str, Any] | None,
    ) -> bool:
        """Deactivate the user's active keys that no version names, past their grace."""
        if metadata.version_with(PENDING) is not None and metadata.rotation_enabled:
            # A rotation in flight: its key may not be stored yet, and its own
            # createSecret deletes what no version holds. With rotation switched off
            # (CancelRotateSecret leaves AWSPENDING where it was) nothing will finish
            # it: its key is no one's, like any other key no version names.
            return False
        user = current.get("UserName")
        if not isinstance(user, str) or not user:
            return False
        named = {current.get("AccessKeyId")}
        if previous is not None:
            named.add(previous.get("AccessKeyId"))
        elif metadata.version_with(PREVIOUS) is not None:
            # A previous version that does not parse may still name a key someone
            # holds: without knowing which, leave every key as it is.
            return False
        keys = self._keys_of(user)
        if self._labels_moved(metadata):
            # A rotation finished between the two reads: its new key is named by a
            # version this run did not read. The next run sees it.
            return False
        deactivated = False
        for key in keys:
            key_id = key["AccessKeyId"]
            if key_id in named or key.get("Status") != "Active":
                continue
            created = key.get("CreateDate")
            if created is None or self._now() - created < UNNAMED_KEY_GRACE:
                continue
            if not deactivate_access_key(self.iam, user, key_id):
                continue
            deactivated = True
            logger.warning(
                "access key no version names deactivated",
                extra={
                    "secret": metadata.name,
                    "user": user,
                    "access_key_id": key_id,
                    "key_created": created.isoformat(),
                },
            )
        return deactivated

    def _labels_moved(self, metadata: SecretMetadata) -> bool:
        again = self._store.describe(metadata.arn)
        return any(
            again.version_with(stage) != metadata.version_with(stage)
            for stage in (CURRENT, PREVIOUS, PENDING)
        )

    def _read(self, metadata: SecretMetadata, stage: str, version_id: str) -> dict[str, Any] | None:
        """The version's value (audited), or None when it has none or it does not parse."""
        try:
            found = self._store.read(metadata.arn, version_id=version_id)
        except SecretValueError:
            logger.warning(
                "version does not parse; left out of the sweep",
                extra={"secret": metadata.name, "stage": stage, "version_id": version_id},
            )
            return None
        return found.value if found is not None else None

    def _active(self, user: str, key_id: str) -> bool:
        """Whether IAM lists `key_id` as an active key of `user` (a user gone: no)."""
        return any(
            k["AccessKeyId"] == key_id and k.get("Status") == "Active" for k in self._keys_of(user)
        )

    def _keys_of(self, user: str) -> list[AccessKeyMetadataTypeDef]:
        """The user's access keys as IAM lists them; none when the user is gone."""
        try:
            return self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        except Exception as exc:
            if clients.error_code(exc) == "NoSuchEntity":
                return []
            raise
