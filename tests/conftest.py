"""Session-wide fixtures: fake AWS credentials, the moto server, settings cache."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.support.aws import reset_moto, running_moto_server, use_fake_credentials

# PostgreSQL fixtures: pg_cluster, scram_cluster, migrated_db, scram_db, db, api_db.
pytest_plugins = ["tests.support.postgres"]

use_fake_credentials()
# Any AWS call a test makes without the `aws` fixture fails at once on a closed
# loopback port instead of waiting on the network for a real endpoint.
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BabyShield")
# Keep X-Ray out of tests: no daemon runs here.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with running_moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean moto server for one test, with boto3 pointed at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    reset_moto(moto_endpoint)
    yield moto_endpoint
    reset_moto(moto_endpoint)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    from functions.shared.settings import get_settings

    get_settings.cache_clear()
    _clear_rate_limit_pause()
    yield
    # A pool a test opened without meaning to (an audit row written on a refused
    # admin request, say) keeps retrying its connection in a background thread; left
    # open, that thread reads and caches the next test's settings before the test has
    # set its environment. Closed first, so nothing re-caches after the clear.
    pools = sys.modules.get("functions.shared.db.pools")
    if pools is not None:
        pools.close_pools()
    get_settings.cache_clear()


def _clear_rate_limit_pause() -> None:
    # A test whose DynamoDB failed leaves the limiter paused in this process (as a
    # Lambda instance would be); the next test starts with a limiter that asks.
    rate_limit = sys.modules.get("functions.shared.identity.rate_limit")
    if rate_limit is not None:
        rate_limit.pause.clear()
