"""The rotator for each kind of secret this function rotates (see the inventory)."""

from __future__ import annotations

from functions.rotate_iam.access_keys import AccessKeyRotator
from functions.rotate_iam.generated import GeneratedSecretRotator
from functions.shared.rotation.protocol import DispatchingRotator, Rotator, StepContext


class ByKindRotator(DispatchingRotator):
    """Hands each step to the rotator of the secret's inventory kind."""

    def __init__(self, by_kind: dict[str, Rotator]):
        self._by_kind = by_kind

    def _for(self, ctx: StepContext) -> Rotator:
        try:
            return self._by_kind[ctx.spec.kind]
        except KeyError:
            raise TypeError(f"{ctx.spec.name}: kind {ctx.spec.kind} is not rotated here") from None


def default_rotator() -> ByKindRotator:
    return ByKindRotator(
        {"iam-access-key": AccessKeyRotator(), "generated": GeneratedSecretRotator()}
    )
