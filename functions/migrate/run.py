"""Apply the pending migrations with the db-admin secret's credentials."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

from functions.shared.db.credentials import source_for
from functions.shared.db.migrations import CONNECT_PAUSES_SECONDS, apply_migrations
from functions.shared.db.roles import PRODUCTION_ROLES, RoleNames
from functions.shared.observability import logger
from functions.shared.settings import get_settings


def run_migrations(roles: RoleNames = PRODUCTION_ROLES) -> dict[str, Any]:
    """Apply what is pending; a failure raises, which fails the deploy that ran it.

    `roles` is the production spelling except in tests, which share a cluster.
    """
    parameters = source_for("admin", get_settings()).current()
    applied = apply_migrations(
        make_conninfo(**parameters), roles=roles, connect_pauses=CONNECT_PAUSES_SECONDS
    )
    logger.info("migrations applied", extra={"applied": applied, "count": len(applied)})
    return {"applied": applied}
