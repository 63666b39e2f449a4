"""Zero downtime, measured: queries keep succeeding while every database secret rotates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from functions.shared.rotation.driver import LocalRotationDriver
from tests.integration.rotation.database_fixtures import DatabaseSecrets


@dataclass
class Load:
    """Threads running one query each in a loop; every exception is a failed request."""

    successes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, name: str, query: Callable[[], None]) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                try:
                    query()
                except Exception as exc:  # noqa: BLE001 - any exception is a failed request
                    with self.lock:
                        self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                else:
                    with self.lock:
                        self.successes[name] = self.successes.get(name, 0) + 1
                time.sleep(0.005)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.fixture
def consumers(db_secrets: DatabaseSecrets, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The API's database layer reading the tiers' secrets from moto, with a 1 s cache.

    A short cache means new connections often start from a value one rotation old,
    which is what exercises the credential refresh on a rejected password.
    """
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    monkeypatch.setenv("SECRET_CACHE_SECONDS", "1")
    monkeypatch.setenv("DB_POOL_MAX_SIZE", "3")
    get_settings.cache_clear()
    close_pools()
    yield
    close_pools()


def _readonly_query() -> None:
    from functions.shared.db import readonly_session

    with readonly_session() as conn:
        conn.execute("SELECT count(*) FROM public.recalls").fetchone()


def _write_query() -> None:
    from functions.shared.db import write_session

    with write_session(user_id=None) as conn:
        conn.execute(
            "INSERT INTO public.audit_log (action, outcome) VALUES (%s, %s)",
            ("zero-downtime-test", "ok"),
        )


def _fresh_connection_query(tier: str) -> Callable[[], None]:
    """A new connection per query through the tier's credential source (cache + refresh)."""
    import psycopg

    from functions.shared.db.credentials import source_for
    from functions.shared.db.pools import with_credentials
    from functions.shared.settings import get_settings

    source = source_for(tier, get_settings())  # type: ignore[arg-type]

    def query() -> None:
        def connect(parameters: dict[str, object]) -> psycopg.Connection[tuple[object, ...]]:
            return psycopg.connect(**parameters, autocommit=True)  # type: ignore[arg-type]

        with with_credentials(source, connect) as conn:
            conn.execute("SELECT 1 FROM public.recalls LIMIT 1").fetchall()

    return query


def test_no_query_fails_while_every_database_secret_rotates_twice(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver, consumers: None
) -> None:
    """The issue's zero-downtime requirement: not one failed query during rotations.

    Two rotations per tier matter: the second gives the login the first rotation
    moved away from a new password, so a consumer still holding the old value
    must refresh rather than fail.
    """
    load = Load()
    for index in range(3):
        load.run(f"readonly-session-{index}", _readonly_query)
    for index in range(2):
        load.run(f"write-session-{index}", _write_query)
    load.run("readonly-fresh", _fresh_connection_query("readonly"))
    load.run("app-fresh", _fresh_connection_query("app"))
    try:
        time.sleep(0.3)
        for _ in range(2):
            for name in ("db-readonly", "db-app", "db-admin"):
                db_driver.rotate(name)
                time.sleep(0.3)
        time.sleep(1.5)
    finally:
        load.finish()
    assert load.failures == []
    assert all(db_secrets.agree(name) for name in ("db-readonly", "db-app", "db-admin"))
    # Every thread really ran queries throughout.
    assert len(load.successes) == 7
    assert min(load.successes.values()) > 20
