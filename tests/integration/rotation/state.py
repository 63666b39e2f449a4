"""Reading (and, as an operator would, changing) a secret's state in the rotation tests."""

from __future__ import annotations

import json
from typing import Any

from functions.shared.identity.jwt_keys import JwtKeyStore
from functions.shared.identity.secret_versions import SecretVersionsCache
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver
from functions.shared.rotation.protocol import Rotator, run_step
from functions.shared.rotation.store import SecretStore


def current_value(store: SecretStore, name: str) -> dict[str, Any]:
    found = store.read(spec(name).secret_name, stage="AWSCURRENT")
    assert found is not None
    return found.value


def stages(store: SecretStore, name: str) -> dict[str, tuple[str, ...]]:
    return store.describe(spec(name).secret_name).stages


def paste_then_restore(store: SecretStore, name: str, bad: str) -> str:
    """An operator pastes `bad` as the value, then puts the right JSON back: the bad
    value is AWSPREVIOUS, the good one AWSCURRENT. Returns the bad version's id."""
    secret_id = spec(name).secret_name
    good = current_value(store, name)
    versions = []
    for value in (bad, json.dumps(good)):
        # Labels moved as Secrets Manager moves them: moto's own PutSecretValue move
        # loses track of a current version the driver promoted (two AWSCURRENT).
        current = store.describe(secret_id).version_with("AWSCURRENT")
        versions.append(
            store.client.put_secret_value(
                SecretId=secret_id, SecretString=value, VersionStages=["PASTED"]
            )["VersionId"]
        )
        store.promote(secret_id, versions[-1], current)
        store.remove_stage(secret_id, "PASTED", versions[-1])
    now = stages(store, name)
    assert now[versions[0]] == ("AWSPREVIOUS",)
    assert now[versions[1]] == ("AWSCURRENT",)
    assert sum("AWSCURRENT" in labels for labels in now.values()) == 1
    return versions[0]


def jwt_keys() -> JwtKeyStore:
    """The JWT key ring as the API reads it, from a cache of its own."""
    return JwtKeyStore(spec("jwt-signing-key").secret_name, cache=SecretVersionsCache())


def jwt_driver(store: SecretStore, rotator: Rotator) -> LocalRotationDriver:
    """A local driver that runs the JWT rotation steps with `rotator` (one with its own
    clock, say), as the rotate_jwt function would."""
    return LocalRotationDriver(
        store=store,
        handler=lambda event, context: run_step(event, rotator, "rotate_jwt", store),
        backoff_seconds=0.0,
        sleep=lambda _: None,
    )
