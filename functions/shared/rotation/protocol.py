"""The rotation protocol: the gate before any step and the dispatch of the four steps.

Every rotation function hands its event and a `Rotator` to `run_step`. The gate
follows the AWS rotation samples: rotation must be enabled, the token must be a
version of the secret, a token already AWSCURRENT means there is nothing left to
do, and anything but AWSPENDING is an error. One log line per step names the
secret and the version id, never a value.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from functions.shared import inventory, names
from functions.shared.inventory import RotationMethod, SecretSpec
from functions.shared.observability import logger, metrics
from functions.shared.rotation.store import (
    CURRENT,
    EMERGENCY_TAG,
    PENDING,
    PREVIOUS,
    SecretMetadata,
    SecretStore,
    SecretValueError,
    SecretVersion,
)

Step = Literal["createSecret", "setSecret", "testSecret", "finishSecret"]
STEPS: tuple[Step, ...] = ("createSecret", "setSecret", "testSecret", "finishSecret")


class RotationError(Exception):
    """A step cannot proceed. Messages carry the secret name and version id only."""

    # False for a refusal that holds for minutes or until someone acts: the local
    # driver then stops at once instead of retrying (Secrets Manager retries anyway).
    retry_helps: ClassVar[bool] = True


class RotationNotEnabled(RotationError):
    pass


class NotAVersion(RotationError):
    pass


class NotPending(RotationError):
    pass


class RotationInProgress(RotationError):
    pass


class WrongRotationFunction(RotationError):
    pass


@dataclass(frozen=True)
class RotationRequest:
    step: Step
    secret_id: str
    token: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RotationRequest:
        step = event.get("Step")
        secret_id = event.get("SecretId")
        token = event.get("ClientRequestToken")
        if step not in STEPS:
            raise RotationError(f"unknown rotation step {step!r}")
        if not isinstance(secret_id, str) or not secret_id:
            raise RotationError("rotation event has no SecretId")
        if not isinstance(token, str) or not token:
            raise RotationError("rotation event has no ClientRequestToken")
        return cls(cast(Step, step), secret_id, token)


@dataclass(frozen=True)
class StepContext:
    """What a step knows: the request, the secret's labels and its inventory entry."""

    request: RotationRequest
    metadata: SecretMetadata
    spec: SecretSpec
    store: SecretStore

    @property
    def secret_id(self) -> str:
        return self.metadata.arn

    @property
    def token(self) -> str:
        return self.request.token

    @property
    def emergency(self) -> bool:
        return self.metadata.tags.get(EMERGENCY_TAG) == self.request.token

    def current(self) -> SecretVersion:
        found = self.store.read(self.secret_id, stage=CURRENT)
        if found is None:
            raise RotationError(f"{self.spec.name}: no {CURRENT} version to rotate from")
        return found

    def pending(self) -> SecretVersion | None:
        """The value createSecret stored for this token, or None before it ran."""
        return self.store.read(self.secret_id, version_id=self.token, stage=PENDING)

    def require_pending(self) -> SecretVersion:
        found = self.pending()
        if found is None:
            raise RotationError(f"{self.spec.name}: version {self.token} has no value yet")
        return found

    def previous(self) -> tuple[SecretVersion | None, str | None]:
        """AWSPREVIOUS as (value, None), or (None, its version id) when its value does
        not parse. Rotation is how a malformed value gets replaced, so no step may fail
        on one: it holds nothing to tidy, retire or keep, and is logged by version id,
        never by value."""
        try:
            return self.store.read(self.secret_id, stage=PREVIOUS), None
        except SecretValueError as exc:
            if exc.version_id is None or exc.version_id == self.token:
                raise
            logger.warning(
                "previous version does not parse; left out",
                extra={
                    "secret": self.metadata.name,
                    "step": self.request.step,
                    "version_id": self.token,
                    "previous_version_id": exc.version_id,
                    "emergency": self.emergency,
                },
            )
            return None, exc.version_id


class Rotator(ABC):
    """The kind-specific part of a rotation; every method must be safe to run twice."""

    @abstractmethod
    def create_secret(self, ctx: StepContext) -> None:
        """Store a new value as AWSPENDING under the token, unless one is stored already."""

    @abstractmethod
    def set_secret(self, ctx: StepContext) -> None:
        """Make the service accept the pending value (no-op when it already does)."""

    @abstractmethod
    def test_secret(self, ctx: StepContext) -> None:
        """Prove the pending value works against the service; raise if it does not."""

    def after_promote(self, ctx: StepContext, previous: SecretVersion) -> None:  # noqa: B027
        """Tidy the service once the new value is current, routine or emergency. No
        rotator needs it today: IAM's old key stays active through its overlap window."""

    def retire(self, ctx: StepContext, previous: SecretVersion | None) -> None:  # noqa: B027
        """Emergency only: make the previous value useless at once. `previous` is None
        when AWSPREVIOUS does not parse (a console edit the emergency rotated from):
        what it held is then known only to the service."""


class DispatchingRotator(Rotator):
    """A function that rotates several kinds: every step goes to the rotator `_for` picks."""

    @abstractmethod
    def _for(self, ctx: StepContext) -> Rotator:
        """The rotator for this secret."""

    def create_secret(self, ctx: StepContext) -> None:
        self._for(ctx).create_secret(ctx)

    def set_secret(self, ctx: StepContext) -> None:
        self._for(ctx).set_secret(ctx)

    def test_secret(self, ctx: StepContext) -> None:
        self._for(ctx).test_secret(ctx)

    def after_promote(self, ctx: StepContext, previous: SecretVersion) -> None:
        self._for(ctx).after_promote(ctx, previous)

    def retire(self, ctx: StepContext, previous: SecretVersion | None) -> None:
        self._for(ctx).retire(ctx, previous)


def gate(request: RotationRequest, metadata: SecretMetadata) -> Literal["run", "done"]:
    """Decide whether a step runs; raise when the event does not fit the secret."""
    if not metadata.rotation_enabled:
        raise RotationNotEnabled(f"{metadata.name}: rotation is not enabled")
    emergency = metadata.tags.get(EMERGENCY_TAG)
    if emergency is not None and emergency != request.token and emergency in metadata.stages:
        # An emergency that stopped after its promotion holds AWSCURRENT alone, and
        # Secrets Manager starts the next rotation (a schedule, a console "rotate now")
        # over it. That one would run as routine and the emergency's retirement of the
        # leaked value would be lost for good: only finishing the emergency does it.
        known = inventory.spec_for_secret_name(metadata.name)
        name = known.name if known else metadata.name
        raise RotationInProgress(
            f"{metadata.name}: the emergency rotation of version {emergency} is "
            f"unfinished; finish it first (`babyshield rotate {name} --resume`)"
        )
    stages = metadata.stages.get(request.token)
    if stages is None:
        # Secrets Manager creates the pending version (without a value) before it calls
        # createSecret; the local driver leaves that to createSecret, whose put under the
        # token creates it. Any other step needs the version to exist, and no second
        # rotation may start while another token holds AWSPENDING.
        in_progress = metadata.pending_elsewhere()
        if request.step != "createSecret":
            raise NotAVersion(f"{metadata.name}: {request.token} is not a version of the secret")
        if in_progress is not None:
            raise RotationInProgress(
                f"{metadata.name}: version {in_progress} is already AWSPENDING"
            )
        return "run"
    if CURRENT in stages:
        return "done"
    if PENDING not in stages:
        raise NotPending(f"{metadata.name}: version {request.token} is not AWSPENDING")
    return "run"


def spec_for(metadata: SecretMetadata, method: RotationMethod) -> SecretSpec:
    found = inventory.spec_for_secret_name(metadata.name)
    if found is None:
        raise WrongRotationFunction(f"{metadata.name}: not in the secret inventory")
    if found.method != method:
        raise WrongRotationFunction(f"{metadata.name}: rotated by {found.method}, not {method}")
    return found


def finish_secret(ctx: StepContext, rotator: Rotator) -> None:
    """Promote the token, then tidy; every part is a no-op once it has happened."""
    current = ctx.metadata.version_with(CURRENT)
    if current != ctx.token:
        ctx.store.promote(ctx.secret_id, ctx.token, current)
    if ctx.metadata.promoted_at(ctx.token) is None:
        # Dated after the promotion, also when a retry finds it done: late is safe (it
        # only delays a routine rotation that must wait for the old value's tokens).
        ctx.store.mark_promoted(ctx.secret_id, ctx.token, time.time())
    previous, unreadable = ctx.previous()
    if previous is not None and previous.version_id != ctx.token:
        rotator.after_promote(ctx, previous)
        if ctx.emergency:
            rotator.retire(ctx, previous)
            # Consumers that accept AWSPREVIOUS (JWT keys, webhook secrets) stop at once.
            ctx.store.remove_stage(ctx.secret_id, PREVIOUS, previous.version_id)
    elif unreadable is not None and ctx.emergency:
        # Nothing in it to tidy, but what the service still accepts from before is
        # retired (a database tier: every login the new value does not name), and the
        # emergency takes the label away.
        rotator.retire(ctx, None)
        ctx.store.remove_stage(ctx.secret_id, PREVIOUS, unreadable)
    if ctx.emergency:
        ctx.store.clear_emergency(ctx.secret_id)
    if PENDING in ctx.metadata.stages.get(ctx.token, ()):
        # Leaving AWSPENDING on the current version is allowed, but a later RotateSecret
        # on some implementations reads it as a rotation still in progress.
        ctx.store.remove_stage(ctx.secret_id, PENDING, ctx.token)


def run_step(
    event: Mapping[str, Any],
    rotator: Rotator,
    method: RotationMethod,
    store: SecretStore | None = None,
) -> str:
    """Gate and run one step; returns "done" (nothing to do) or "completed"."""
    request = RotationRequest.from_event(event)
    store = store or SecretStore(caller=f"{method}:{request.step}")
    started = time.monotonic()
    # The event's SecretId names the secret until its metadata is read: a failing
    # DescribeSecret is a failed step too, counted and logged like any other.
    fields: dict[str, Any] = {
        "secret": request.secret_id,
        "version_id": request.token,
        "step": request.step,
    }
    try:
        metadata = store.describe(request.secret_id)
        fields["secret"] = metadata.name
        spec = spec_for(metadata, method)
        decision = gate(request, metadata)
        ctx = StepContext(request, metadata, spec, store)
        # finishSecret still runs when the token is already current: its tidy-up (an
        # emergency's retirement) may be what a crashed earlier run left undone.
        if decision == "done" and request.step != "finishSecret":
            outcome = "done"
        else:
            _dispatch(ctx, rotator)
            outcome = "completed"
    except Exception as exc:
        metrics.add_metric(name=names.METRIC_ROTATION_FAILURES, unit="Count", value=1)
        logger.warning(
            "rotation step failed",
            extra={**fields, "error": type(exc).__name__, "seconds": _since(started)},
        )
        raise
    if request.step == "finishSecret" and outcome == "completed":
        metrics.add_metric(name=names.METRIC_ROTATION_SUCCESSES, unit="Count", value=1)
    logger.info(
        "rotation step",
        extra={
            **fields,
            "outcome": outcome,
            "emergency": ctx.emergency,
            "seconds": _since(started),
        },
    )
    return outcome


def _dispatch(ctx: StepContext, rotator: Rotator) -> None:
    step = ctx.request.step
    if step == "createSecret":
        rotator.create_secret(ctx)
    elif step == "setSecret":
        rotator.set_secret(ctx)
    elif step == "testSecret":
        rotator.test_secret(ctx)
    else:
        finish_secret(ctx, rotator)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
