"""What `make run` needs from the database: migrated, seeded once however often it
starts, and the API connected as the tier logins (passwords checked by the server)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from functions.shared.db.pools import close_pools
from functions.shared.settings import get_settings
from ops.db import prepare_local_database
from ops.seed import DEMO_RECALLS, seed_demo_data
from tests.support.api import call_api
from tests.support.postgres import fresh_database


def test_seeding_twice_inserts_the_demo_recalls_once(pg_cluster: str):
    with fresh_database(pg_cluster) as (conninfo, roles):
        prepare_local_database(conninfo, seed=False, roles=roles)
        assert seed_demo_data(conninfo) == len(DEMO_RECALLS) >= 30
        assert seed_demo_data(conninfo) == 0
        with psycopg.connect(conninfo) as conn:
            cribs = conn.execute("SELECT count(*) FROM recalls WHERE product ILIKE '%crib%'")
            assert cribs.fetchone()[0] >= 5  # type: ignore[index]


def test_the_local_api_serves_seeded_cribs_as_the_readonly_login(
    scram_cluster: str, monkeypatch: pytest.MonkeyPatch
):
    with fresh_database(scram_cluster) as (conninfo, roles):
        # Given a local database prepared as `make run` prepares it
        environment = prepare_local_database(conninfo, roles=roles)
        assert conninfo_to_dict(environment["DATABASE_READONLY_URL"])["user"] == roles.readonly_a
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BABYSHIELD_ENV", "local")
        get_settings.cache_clear()
        close_pools()
        try:
            # When the API is asked for cribs
            response = call_api("GET", "/recalls", query="q=crib")
        finally:
            close_pools()
        # Then the seeded crib recalls come back from the real database
        assert response.status == 200
        items = response.json()["items"]
        assert "DEMO-2024-001" in {item["source_id"] for item in items}
        for item in items:
            text = " ".join([item["product"], item["hazard"], item["description"] or ""])
            assert "crib" in text.lower()
