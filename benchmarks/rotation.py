"""Rotation: seconds per rotation of each kind, and failed requests while rotating.

Everything is real except AWS, which is the moto server over HTTP: the handlers
run in-process through the local driver, PostgreSQL checks passwords
(scram-sha-256). The load runs readonly_session()/write_session() queries in
threads while every database secret rotates; the target is zero failed queries.
"""

from __future__ import annotations

import json
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from benchmarks.common import Result, environment

ROUNDS = 5


def _median_seconds(rotate: Callable[[], object], rounds: int = ROUNDS) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        rotate()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _seed(database: Any, store: Any) -> None:
    import boto3
    from psycopg.conninfo import conninfo_to_dict

    from functions.shared import names
    from functions.shared.identity.jwt_keys import generate_jwt_secret_value
    from functions.shared.identity.webhooks import generate_webhook_secret_value
    from functions.shared.inventory import spec
    from functions.shared.rotation.driver import seed_secret
    from ops.provision import ensure_tables
    from ops.rotate import seed_partner_export_key

    # The webhook secret's rotation reads which version the feed last signed with.
    ensure_tables(boto3.client("dynamodb"))
    iam = boto3.client("iam")
    iam.create_user(UserName=names.PARTNER_EXPORT_USER)
    seed_partner_export_key(store, iam)
    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value()))
    seed_secret(store, spec("webhook-signing-secret"), json.loads(generate_webhook_secret_value()))
    target = conninfo_to_dict(database.admin_conninfo)
    endpoint = {
        "engine": "postgres",
        "host": target["host"],
        "port": int(str(target["port"])),
        "dbname": database.name,
    }
    roles = database.roles
    database.set_password(roles.migrator, secrets.token_urlsafe(18))
    seed_secret(
        store,
        spec("db-admin"),
        {**endpoint, "username": roles.migrator, "password": database.passwords[roles.migrator]},
    )
    admin_arn = store.describe(spec("db-admin").secret_name).arn
    for name, login in (("db-readonly", roles.readonly_a), ("db-app", roles.app_a)):
        database.set_password(login, secrets.token_urlsafe(18))
        seed_secret(
            store,
            spec(name),
            {
                **endpoint,
                "username": login,
                "password": database.passwords[login],
                "masterarn": admin_arn,
            },
        )


def _failed_requests_during(rotate_all: Callable[[], None]) -> tuple[int, int, list[str]]:
    from functions.shared.db import readonly_session, write_session

    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    samples: list[str] = []

    def read() -> None:
        with readonly_session() as conn:
            conn.execute("SELECT count(*) FROM public.recalls").fetchone()

    def write() -> None:
        with write_session(user_id=None) as conn:
            conn.execute("INSERT INTO public.audit_log (action, outcome) VALUES ('bench', 'ok')")

    def loop(query: Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                query()
            except Exception as exc:  # noqa: BLE001 - every exception is a failed request
                with lock:
                    counts["failed"] += 1
                    if len(samples) < 3:
                        samples.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                with lock:
                    counts["ok"] += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=loop, args=(q,)) for q in (read, read, read, write, write)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        rotate_all()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return counts["ok"], counts["failed"], samples


def run() -> Result:
    # Before anything imports the Powertools logger, which reads its level once.
    with environment(
        {
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    ):
        return _run()


def _run() -> Result:
    from ops.postgres import checks_passwords, embedded_cluster, shared_server
    from tests.support.aws import running_moto_server, use_fake_credentials
    from tests.support.postgres import private_database

    use_fake_credentials()
    result = Result("rotation")
    with ExitStack() as stack:
        endpoint = stack.enter_context(running_moto_server())
        shared = shared_server()
        cluster = (
            shared
            if shared and checks_passwords(shared)
            else stack.enter_context(embedded_cluster())
        )
        database = stack.enter_context(private_database(cluster))
        stack.enter_context(
            environment(
                {
                    "AWS_ENDPOINT_URL": endpoint,
                    "BABYSHIELD_ENV": "local",
                    "SECRET_CACHE_SECONDS": "1",
                    "DB_POOL_MAX_SIZE": "3",
                }
            )
        )
        from functions.shared.db.pools import close_pools
        from functions.shared.rotation.driver import LocalRotationDriver
        from functions.shared.rotation.store import SecretStore
        from functions.shared.settings import get_settings

        get_settings.cache_clear()
        store = SecretStore(caller="benchmark")
        _seed(database, store)
        driver = LocalRotationDriver(store=store)

        seconds = {
            "generated (webhook)": _median_seconds(lambda: driver.rotate("webhook-signing-secret")),
            # A routine JWT rotation is refused while the previous key's tokens may
            # still be valid (PreviousKeyStillLive): back-to-back rounds are emergencies.
            "jwt key pair, emergency": _median_seconds(
                lambda: driver.rotate("jwt-signing-key", emergency=True)
            ),
            "db alternating (app)": _median_seconds(lambda: driver.rotate("db-app")),
            "db single user (admin)": _median_seconds(lambda: driver.rotate("db-admin")),
            "generated, emergency": _median_seconds(
                lambda: driver.rotate("webhook-signing-secret", emergency=True)
            ),
        }
        # IAM keeps the previous key through a grace window: one normal rotation, then
        # emergencies (which skip the window), so every round can run.
        seconds["iam access key"] = _median_seconds(
            lambda: driver.rotate("iam-partner-export", emergency=True), rounds=3
        )

        close_pools()

        def rotate_every_database_secret_twice() -> None:
            for _ in range(2):
                for name in ("db-readonly", "db-app", "db-admin"):
                    driver.rotate(name)
                    time.sleep(0.2)

        ok, failed, samples = _failed_requests_during(rotate_every_database_secret_twice)
        close_pools()
        get_settings.cache_clear()

    result.ratios = {
        "db_alternating_over_generated": seconds["db alternating (app)"]
        / seconds["generated (webhook)"],
        "emergency_over_normal_generated": seconds["generated, emergency"]
        / seconds["generated (webhook)"],
    }
    result.figures = {
        "seconds_per_rotation": {name: round(value, 4) for name, value in seconds.items()},
        "load_during_rotation": {"succeeded": ok, "failed": failed},
    }
    result.targets = {"no failed request while rotating": failed == 0 and ok > 0}
    if samples:
        result.notes.extend(f"failure sample: {sample}" for sample in samples)
    result.notes.append(
        "AWS is the moto server over HTTP; a Lambda in AWS adds invocation latency per step"
    )
    return result
