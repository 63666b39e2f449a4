"""Settings refuse values that would make the platform do something else than it says."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from functions.shared import names
from functions.shared.settings import settings_from_environment


@pytest.mark.parametrize(
    "value",
    [
        f"{names.ALARM_FAILED_SIGNINS}=-3600",  # on-call told "blocked"; never live
        f"{names.ALARM_FAILED_SIGNINS}=30",  # below the shortest block
        f"{names.ALARM_FAILED_SIGNINS}={8 * 24 * 3600}",  # past the cap
    ],
)
def test_a_per_alarm_block_expiry_outside_the_bounds_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="block_expiry_by_alarm"):
        settings_from_environment({"BLOCK_EXPIRY_BY_ALARM": value})


def test_a_per_alarm_block_expiry_inside_the_bounds_is_taken() -> None:
    settings = settings_from_environment(
        {"BLOCK_EXPIRY_BY_ALARM": f"{names.ALARM_FAILED_SIGNINS}=600"}
    )
    assert settings.block_expiry_by_alarm == {names.ALARM_FAILED_SIGNINS: 600}
