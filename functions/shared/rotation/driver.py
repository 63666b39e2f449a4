"""Play Secrets Manager's part of a rotation against a local endpoint (moto).

Secrets Manager itself calls the rotation Lambda four times and retries a step
that failed. On the local stack nothing does that, so `babyshield rotate` and
the tests use this driver: it calls the real handler (`functions.<method>.handler
.lambda_handler`) with the four events, retries a failed step with a growing
pause (unless its error says a retry cannot help: `RotationError.retry_helps`),
and stops with the rotation left pending (as the service does) when a step keeps
failing, so the state can be inspected and the rotation resumed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.shared import names
from functions.shared.inventory import SecretSpec, spec
from functions.shared.rotation.clients import error_code
from functions.shared.rotation.protocol import STEPS, RotationError, RotationInProgress, Step
from functions.shared.rotation.store import (
    CURRENT,
    EMERGENCY_TAG,
    PENDING,
    PREVIOUS,
    SecretStore,
)

Handler = Callable[[Mapping[str, Any], Any], Any]


@dataclass
class DriverContext:
    """The Lambda context attributes Powertools reads."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class RotationFailed(Exception):
    """A step kept failing. `left_pending`: version `token` holds AWSPENDING, to be
    resumed or cancelled; otherwise nothing was stored (createSecret failed before
    its put) and the rotation can simply run again."""

    def __init__(
        self,
        name: str,
        token: str,
        step: Step,
        attempts: int,
        cause: BaseException,
        *,
        left_pending: bool,
    ):
        where = f"version {token} is left AWSPENDING" if left_pending else "nothing was stored"
        super().__init__(
            f"{name}: {step} failed {attempts} time(s) ({type(cause).__name__}); {where}"
        )
        self.name = name
        self.token = token
        self.step = step
        self.attempts = attempts
        self.cause = cause
        self.left_pending = left_pending


class NothingToResume(RotationError):
    """--resume with no version AWSPENDING: resuming must not start a new rotation."""


@dataclass
class RotationResult:
    name: str
    version_id: str
    emergency: bool
    attempts: dict[str, int]
    seconds: float


def handler_for(item: SecretSpec) -> Handler:
    module = importlib.import_module(f"functions.{item.method}.handler")
    found: Handler = module.lambda_handler
    return found


def enable_rotation(store: SecretStore, item: SecretSpec) -> None:
    """Turn rotation on for a local secret, as CDK's rotation schedule does in AWS.

    moto only reports RotationEnabled after a RotateSecret with rules; without a
    Lambda ARN and with RotateImmediately=False it records the schedule and also
    makes an unchanged copy of the current value current, which AWS does not. The
    original then loses its AWSPREVIOUS label: left there, the same value would pass
    for one a rotation old (the JWT rotation's guard reads AWSPREVIOUS's age). The
    copy stays current, where moto's own bookkeeping expects it.
    """
    before = store.describe(item.secret_name)
    if before.rotation_enabled:
        return
    store.client.rotate_secret(
        SecretId=item.secret_name,
        RotationRules={"AutomaticallyAfterDays": item.period_days},
        RotateImmediately=False,
    )
    original = before.version_with(CURRENT)
    copy = store.describe(item.secret_name).version_with(CURRENT)
    if original is not None and copy is not None and copy != original:
        store.remove_stage(item.secret_name, PREVIOUS, original)


def seed_secret(store: SecretStore, item: SecretSpec, value: Mapping[str, Any]) -> None:
    """Create a local secret with its first value (kept if it exists) and enable rotation."""
    try:
        store.client.create_secret(
            Name=item.secret_name,
            Description=item.description,
            SecretString=json.dumps(dict(value), sort_keys=True),
        )
    except Exception as exc:
        if error_code(exc) != "ResourceExistsException":
            raise
    enable_rotation(store, item)


class LocalRotationDriver:
    """Runs rotations the way Secrets Manager does, for the local stack and tests."""

    def __init__(
        self,
        *,
        store: SecretStore | None = None,
        handler: Handler | None = None,
        max_attempts: int = 3,
        backoff_seconds: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store or SecretStore(caller="local-rotation-driver")
        self._handler = handler
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def rotate(self, name: str, *, emergency: bool = False, resume: bool = False) -> RotationResult:
        """Rotate one inventory secret through the four steps; raise RotationFailed."""
        item = spec(name)
        started = time.monotonic()
        metadata = self.store.describe(item.secret_name)
        if not metadata.rotation_enabled:
            # In AWS the CDK schedule enables rotation; locally the service is this driver.
            enable_rotation(self.store, item)
            metadata = self.store.describe(item.secret_name)
        in_progress = metadata.unfinished_rotation()
        if in_progress is not None and not resume:
            raise RotationInProgress(
                f"{name}: version {in_progress} is already AWSPENDING; resume it or cancel it first"
            )
        if in_progress is None and resume:
            # A new rotation here would surprise: an emergency one logs everyone out again.
            raise NothingToResume(f"{name}: nothing to resume: no version is AWSPENDING")
        if (
            emergency
            and in_progress is not None
            and metadata.tags.get(EMERGENCY_TAG) != in_progress
        ):
            # Its value was made before the incident and may have leaked with the rest.
            raise RotationInProgress(
                f"{name}: version {in_progress} was AWSPENDING before this emergency; "
                "finish it with --resume (without --emergency) or cancel it, "
                "then rotate with --emergency"
            )
        token = in_progress if in_progress is not None else str(uuid.uuid4())
        if emergency:
            self.store.mark_emergency(item.secret_name, token)
        # A resumed emergency finishes as one, whether or not --emergency was repeated.
        emergency = emergency or metadata.tags.get(EMERGENCY_TAG) == token
        handler = self._handler or handler_for(item)
        attempts: dict[str, int] = {}
        try:
            for step in STEPS:
                attempts[step] = self._invoke(handler, item, step, metadata.arn, token)
        except BaseException:
            # Failed or interrupted before anything was stored: no emergency is left
            # to finish, so its tag must not stay, naming a version that never was
            # (as the service path takes it off when RotateSecret is refused).
            if emergency and not self._left(item, token):
                with contextlib.suppress(Exception):
                    self.store.clear_emergency(item.secret_name)
            raise
        return RotationResult(name, token, emergency, attempts, time.monotonic() - started)

    def cancel(self, name: str) -> str | None:
        """Drop a stuck AWSPENDING label; returns the version it was on (None: nothing).

        Safe for every kind whose pending value the service does not yet use. A
        single-user database rotation may have changed the password in setSecret
        already, so it is refused: resume that one instead.
        """
        item = spec(name)
        metadata = self.store.describe(item.secret_name)
        pending = metadata.unfinished_rotation()
        if pending is None:
            return None
        if metadata.promoted_unfinished():
            raise RotationInProgress(
                f"{name}: version {pending} is current already and its rotation did not "
                "finish; resume it instead of cancelling"
            )
        if name == "db-admin":
            raise RotationInProgress(
                f"{name}: a single-user rotation may already have changed the password; "
                "resume it instead of cancelling"
            )
        self.store.remove_stage(item.secret_name, PENDING, pending)
        tagged = metadata.tags.get(EMERGENCY_TAG)
        # The tag goes with the emergency it names, or when it names no version at all;
        # never when it names another version (an emergency still to be finished).
        if tagged is not None and (tagged == pending or tagged not in metadata.stages):
            self.store.clear_emergency(item.secret_name)
        return pending

    def _left(self, item: SecretSpec, token: str) -> bool:
        try:
            return self.store.describe(item.secret_name).unfinished_rotation() == token
        except Exception:  # noqa: BLE001 - unknown: report what may be left, not this error
            return True

    def _invoke(self, handler: Handler, item: SecretSpec, step: Step, arn: str, token: str) -> int:
        event = {"Step": step, "SecretId": arn, "ClientRequestToken": token}
        context = DriverContext(function_name=names.function_name(item.method))
        for attempt in range(1, self.max_attempts + 1):
            try:
                handler(event, context)
                return attempt
            except Exception as exc:
                if attempt == self.max_attempts or not getattr(exc, "retry_helps", True):
                    raise RotationFailed(
                        item.name, token, step, attempt, exc, left_pending=self._left(item, token)
                    ) from exc
                self.sleep(self.backoff_seconds * attempt)
        raise AssertionError("unreachable")


def current_version_id(store: SecretStore, name: str) -> str | None:
    return store.describe(spec(name).secret_name).version_with(CURRENT)
