"""Versions and staging labels of one secret, read and moved with a plain botocore client.

Never the Powertools parameters provider here: its cache key ignores
VersionStage, so asking it for AWSPENDING can return a cached AWSCURRENT and a
rotation would then "test" the old value and promote an untested one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from functions.shared.rotation import clients
from functions.shared.rotation.audit import audit_secret_read

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"

# The tag that marks a rotation as an emergency; its value is the rotation's token,
# so a marker left behind by a crashed run can never turn a later rotation into one.
EMERGENCY_TAG = "babyshield:emergency-rotation"
# When finishSecret made a version AWSCURRENT: `<version id>@<epoch seconds>`. A
# version's CreatedDate is when createSecret stored it; a rotation resumed later is
# promoted long after, and the value it replaced was in use until then.
PROMOTED_TAG = "babyshield:promoted"


class SecretValueError(Exception):
    """A stored value is not the JSON object its kind expects (names the secret only).

    `version_id` names the version that holds it when it came from `SecretStore.read`,
    so a caller can log or relabel that version without ever touching its value.
    """

    def __init__(self, message: str, version_id: str | None = None):
        super().__init__(message)
        self.version_id = version_id


@dataclass(frozen=True)
class SecretMetadata:
    arn: str
    name: str
    rotation_enabled: bool
    stages: dict[str, tuple[str, ...]]
    tags: dict[str, str]
    created: dict[str, float] = field(default_factory=dict)
    # When DeleteSecret marked it for deletion: its values can no longer be read, and
    # after the recovery window it is gone.
    deleted_at: float | None = None
    # The rotation settings DescribeSecret reports (RotationRules, RotationLambdaARN),
    # which the secret-age report holds to the inventory. AWS recomputes the days
    # from the schedule after each rotation, so the expression, when there is one,
    # is the schedule. The local stack sets days and no function: its driver plays
    # Secrets Manager.
    rotation_after_days: int | None = None
    rotation_schedule: str | None = None
    rotation_function_arn: str | None = None

    def version_with(self, stage: str) -> str | None:
        for version_id, stages in self.stages.items():
            if stage in stages:
                return version_id
        return None

    def pending_elsewhere(self) -> str | None:
        """A version holding AWSPENDING that is not AWSCURRENT: a rotation in progress."""
        for version_id, stages in self.stages.items():
            if PENDING in stages and CURRENT not in stages:
                return version_id
        return None

    def current_since(self) -> float | None:
        """When AWSCURRENT's value took over: the later of its creation and its
        promotion tag. None when neither is known."""
        current = self.version_with(CURRENT)
        if current is None:
            return None
        created = self.created.get(current)
        dates = [date for date in (created, self.promoted_at(current)) if date is not None]
        return max(dates) if dates else None

    def promoted_at(self, version_id: str) -> float | None:
        """When finishSecret promoted `version_id`, if the promotion tag names it."""
        named, _, at = self.tags.get(PROMOTED_TAG, "").partition("@")
        if named != version_id:
            return None
        try:
            moment = float(at)
        except ValueError:
            return None
        # mark_promoted writes whole seconds; "inf" or "nan" in a hand-edited tag is no
        # time, and arithmetic on it (the JWT guard's window) would raise.
        return moment if math.isfinite(moment) and moment >= 0 else None

    def promoted_unfinished(self) -> bool:
        """Whether the unfinished rotation is past its promotion: only finishing it does
        what is left, and dropping its labels would skip that for good."""
        unfinished = self.unfinished_rotation()
        return unfinished is not None and unfinished == self.version_with(CURRENT)

    def unfinished_rotation(self) -> str | None:
        """The version of a rotation that has not finished, or None.

        One holding AWSPENDING alone stopped before its promotion. One that is
        AWSCURRENT and still holds AWSPENDING, or that the emergency tag still names,
        stopped inside finishSecret after the promotion: its tidy-up (the leaked login
        retired, the old key deactivated) is what is left, and only finishing that
        version does it.

        An emergency past its promotion comes first: Secrets Manager may start its
        next rotation over it (the new version takes AWSPENDING, and the gate refuses
        its steps), and naming that one would lead on-call to cancel it and resume
        nothing, leaving the leaked value unretired.
        """
        current = self.version_with(CURRENT)
        if current is not None and self.tags.get(EMERGENCY_TAG) == current:
            return current
        pending = self.pending_elsewhere()
        if pending is not None:
            return pending
        if current is not None and PENDING in self.stages.get(current, ()):
            return current
        return None


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    value: dict[str, Any] = field(repr=False)


def parse_value(secret: str, raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "")
    except ValueError:
        raise SecretValueError(f"{secret}: value is not JSON") from None
    if not isinstance(value, dict):
        raise SecretValueError(f"{secret}: value is not a JSON object")
    return value


class SecretStore:
    """One secret's versions: describe, read (audited), put AWSPENDING, move labels."""

    def __init__(self, client: SecretsManagerClient | None = None, *, caller: str = "rotation"):
        self._client = client
        self.caller = caller

    @property
    def client(self) -> SecretsManagerClient:
        return self._client if self._client is not None else clients.secretsmanager()

    def describe(self, secret_id: str) -> SecretMetadata:
        found = self.client.describe_secret(SecretId=secret_id)
        versions = found.get("VersionIdsToStages", {})
        created: dict[str, float] = {}
        arguments: dict[str, Any] = {"SecretId": secret_id, "MaxResults": 100}
        while True:
            page = self.client.list_secret_version_ids(**arguments)
            for version in page.get("Versions", []):
                stamp = version.get("CreatedDate")
                if stamp is not None and "VersionId" in version:
                    created[version["VersionId"]] = stamp.timestamp()
            if not page.get("NextToken"):
                break
            arguments["NextToken"] = page["NextToken"]
        rules = found.get("RotationRules") or {}
        return SecretMetadata(
            arn=found["ARN"],
            name=found["Name"],
            rotation_enabled=bool(found.get("RotationEnabled")),
            stages={version: tuple(stages) for version, stages in versions.items()},
            tags={tag["Key"]: tag["Value"] for tag in found.get("Tags", []) if "Key" in tag},
            created=created,
            deleted_at=found["DeletedDate"].timestamp() if found.get("DeletedDate") else None,
            # Absent, moto answers 0 days and an empty ARN: neither is a setting.
            rotation_after_days=rules.get("AutomaticallyAfterDays") or None,
            rotation_schedule=rules.get("ScheduleExpression") or None,
            rotation_function_arn=found.get("RotationLambdaARN") or None,
        )

    def read(
        self, secret_id: str, *, stage: str | None = None, version_id: str | None = None
    ) -> SecretVersion | None:
        """The version's JSON value, or None when that version or stage holds no value."""
        arguments: dict[str, str] = {"SecretId": secret_id}
        if stage:
            arguments["VersionStage"] = stage
        if version_id:
            arguments["VersionId"] = version_id
        try:
            found = self.client.get_secret_value(**arguments)
        except Exception as exc:
            # Before createSecret the pending version has no value: not an error here.
            if clients.error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        audit_secret_read(found["Name"], stage, self.caller, found["VersionId"])
        try:
            value = parse_value(found["Name"], found.get("SecretString"))
        except SecretValueError as exc:
            raise SecretValueError(str(exc), found["VersionId"]) from None
        return SecretVersion(found["VersionId"], value)

    def put_pending(self, secret_id: str, token: str, value: dict[str, Any]) -> None:
        # The token is the idempotency key: a retried put with the same value is a no-op.
        self.client.put_secret_value(
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=json.dumps(value, sort_keys=True),
            VersionStages=[PENDING],
        )

    def promote(self, secret_id: str, token: str, current: str | None) -> None:
        """Move AWSCURRENT to `token`; Secrets Manager moves AWSPREVIOUS to the old one."""
        arguments: dict[str, str] = {
            "SecretId": secret_id,
            "VersionStage": CURRENT,
            "MoveToVersionId": token,
        }
        if current:
            arguments["RemoveFromVersionId"] = current
        self.client.update_secret_version_stage(**arguments)

    def remove_stage(self, secret_id: str, stage: str, version_id: str) -> None:
        self.client.update_secret_version_stage(
            SecretId=secret_id, VersionStage=stage, RemoveFromVersionId=version_id
        )

    def mark_emergency(self, secret_id: str, token: str) -> None:
        self.client.tag_resource(SecretId=secret_id, Tags=[{"Key": EMERGENCY_TAG, "Value": token}])

    def mark_promoted(self, secret_id: str, version_id: str, at: float) -> None:
        self.client.tag_resource(
            SecretId=secret_id, Tags=[{"Key": PROMOTED_TAG, "Value": f"{version_id}@{int(at)}"}]
        )

    def clear_emergency(self, secret_id: str) -> None:
        self.client.untag_resource(SecretId=secret_id, TagKeys=[EMERGENCY_TAG])
