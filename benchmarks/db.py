"""`db`: latency of GET /recalls through the handler against the real database.

Three ways to run the same search, in the same run, on the same seeded database:
- floor: the query sent directly through one psycopg connection as the read-only
  login, in its own transaction (what any code must pay);
- session: functions.shared.db's pooled read-only session and the data layer (what
  our database layer adds: pool checkout, connection check, row validation);
- handler: the whole Lambda handler, from an API Gateway event to the JSON response
  (edge guards, routing, validation, serialisation, security headers).

The database is the one the tests would use (DATABASE_URL, :5432, else embedded),
in a private database with its own roles, dropped at the end.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import Result, environment

SAMPLES = int(os.environ.get("BENCH_DB_SAMPLES", "400"))
WARMUP = 30
QUERY = "q=crib&limit=20"
SQL = (
    "SELECT id, source_id, product, brand, hazard, remedy, recall_date, description, country,"
    " url FROM public.recalls WHERE search @@ websearch_to_tsquery('english', %(q)s)"
    " ORDER BY recall_date DESC, id DESC LIMIT %(limit)s"
)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000,
    }


def _measure(fn: Callable[[], object]) -> dict[str, float]:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def _bench(database: Any) -> Result:
    import psycopg

    from functions.api.recalls import queries
    from functions.api.recalls.models import RecallSearch
    from functions.shared.db import readonly_session
    from functions.shared.db.pools import close_pools
    from ops.apigw import LocalLambdaContext, rest_event
    from ops.seed import seed_demo_data

    seed_demo_data(database.admin_conninfo)
    from functions.api.handler import lambda_handler

    direct = psycopg.connect(database.tier("readonly"), autocommit=True)

    def floor() -> object:
        with direct.transaction():
            return direct.execute(SQL, {"q": "crib", "limit": 21}).fetchall()

    search = RecallSearch(q="crib", limit=20)

    def session() -> object:
        with readonly_session() as conn:
            return queries.search_recalls(conn, search)

    context = LocalLambdaContext()

    def handler() -> object:
        response = lambda_handler(rest_event("GET", "/recalls", query=QUERY), context)
        assert response["statusCode"] == 200, response
        return response

    settings = {
        "BABYSHIELD_ENV": "local",
        "DATABASE_READONLY_URL": database.tier("readonly"),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "BabyShield",
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }
    rows = len(floor())  # type: ignore[arg-type]
    try:
        with environment(settings):
            figures = {
                "floor": _measure(floor),
                "session": _measure(session),
                "handler": _measure(handler),
            }
    finally:
        direct.close()
        # The pools hold this database's logins; the next benchmark gets its own.
        close_pools()
    result = Result(name="db")
    for path in ("session", "handler"):
        for stat in ("p50_ms", "p95_ms"):
            result.ratios[f"{path}_{stat[:3]}_over_floor"] = (
                figures[path][stat] / figures["floor"][stat]
            )
    result.figures = {
        **figures,
        "samples": SAMPLES,
        "rows_per_page": rows,
        "overhead_p50_ms": figures["handler"]["p50_ms"] - figures["floor"]["p50_ms"],
    }
    # A page of recalls well inside an interactive budget, even on a shared 2-core box.
    result.targets["handler_p95_under_50ms"] = figures["handler"]["p95_ms"] < 50
    result.notes.append(
        "floor: the same SQL over one direct psycopg connection as the read-only login"
    )
    return result


def run() -> Result:
    from ops.postgres import embedded_cluster, shared_server
    from tests.support.postgres import private_database

    server = shared_server()
    if server is not None:
        with private_database(server) as database:
            result = _bench(database)
            result.notes.append("server: DATABASE_URL or 127.0.0.1:5432")
            return result
    with embedded_cluster() as cluster, private_database(cluster) as database:
        result = _bench(database)
        result.notes.append("server: embedded PostgreSQL started for this run")
        return result
