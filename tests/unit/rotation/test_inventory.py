"""The secret inventory: the one table CDK, the CLI and the age metric read."""

from __future__ import annotations

import pytest

from functions.shared.inventory import INVENTORY, spec, spec_for_secret_name

EXPECTED = {
    "db-readonly": ("database", 90, "rotate_db"),
    "db-app": ("database", 90, "rotate_db"),
    "db-admin": ("database", 90, "rotate_db"),
    "jwt-signing-key": ("jwt-signing-key", 30, "rotate_jwt"),
    "iam-partner-export": ("iam-access-key", 60, "rotate_iam"),
    "webhook-signing-secret": ("generated", 90, "rotate_iam"),
}


def test_inventory_matches_the_rotation_schedule_of_the_issue() -> None:
    """Protects the schedule: a changed period or method must be a deliberate edit."""
    assert {i.name: (i.kind, i.period_days, i.method) for i in INVENTORY} == EXPECTED


def test_every_method_is_a_function_package_with_a_handler() -> None:
    """Protects CDK wiring: each method names functions.<method>.handler.lambda_handler."""
    import importlib

    for item in INVENTORY:
        module = importlib.import_module(f"functions.{item.method}.handler")
        assert callable(module.lambda_handler)


def test_lookup_by_secret_name_and_unknown_names() -> None:
    assert spec_for_secret_name("babyshield/db-app") == spec("db-app")
    assert spec_for_secret_name("babyshield/other") is None
    with pytest.raises(KeyError, match="known: db-admin"):
        spec("nope")
