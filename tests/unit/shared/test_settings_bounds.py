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
    assert settings.block_expiry_by_alarm == {
        names.ALARM_FAILED_SIGNINS: 600,
        # Naming another alarm keeps the rate alarm's default: its 429's window.
        names.ALARM_WAF_RATE: 300,
    }


def test_a_rate_limited_client_is_blocked_for_the_window_its_429_named_unless_set() -> None:
    """The rate rule answers 429 "Retry after 300 seconds": a client the responder then
    blocks for it is blocked that long, not the hours an attack is; on-call may still
    set another expiry for it."""
    from functions.shared.waf_rules import RATE_LIMIT_WINDOW_SECONDS

    assert settings_from_environment({}).block_expiry_by_alarm == {
        names.ALARM_WAF_RATE: RATE_LIMIT_WINDOW_SECONDS
    }
    chosen = settings_from_environment({"BLOCK_EXPIRY_BY_ALARM": f"{names.ALARM_WAF_RATE}=900"})
    assert chosen.block_expiry_by_alarm == {names.ALARM_WAF_RATE: 900}


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [(2**20, 32, 1), (2**20, 15, 1), (2**18, 8, 1)],
    ids=["4 GiB", "1.9 GiB", "256 MiB and OpenSSL's overhead"],
)
def test_a_scrypt_cost_needing_more_than_the_memory_bound_is_refused(n: int, r: int, p: int):
    # Each parameter is within its own bound; one sign-in would allocate gigabytes,
    # past the function's memory, or past what hashlib accepts (a 500 on every sign-in).
    with pytest.raises(ValidationError, match="MiB per hash"):
        settings_from_environment({"SCRYPT_N": str(n), "SCRYPT_R": str(r), "SCRYPT_P": str(p)})


def test_owasps_stronger_scrypt_cost_is_taken() -> None:
    settings = settings_from_environment({"SCRYPT_N": str(2**17), "SCRYPT_R": "8"})
    assert (settings.scrypt_n, settings.scrypt_r) == (2**17, 8)
