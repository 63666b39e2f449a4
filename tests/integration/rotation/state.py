"""Reading a secret's state in the rotation tests."""

from __future__ import annotations

from typing import Any

from functions.shared.inventory import spec
from functions.shared.rotation.store import SecretStore


def current_value(store: SecretStore, name: str) -> dict[str, Any]:
    found = store.read(spec(name).secret_name, stage="AWSCURRENT")
    assert found is not None
    return found.value


def stages(store: SecretStore, name: str) -> dict[str, tuple[str, ...]]:
    return store.describe(spec(name).secret_name).stages
