"""Powertools' troubleshooting switch (POWERTOOLS_DEBUG) writes no credential: its
package logger goes to stdout, which Lambda sends to CloudWatch."""

from __future__ import annotations

import io
import logging

import pytest

from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld
from tests.integration.identity.conftest import world as world
from tests.support.api import call_api
from tests.support.identity import identity_env  # noqa: F401


@pytest.fixture
def admin(world: IdentityWorld) -> dict[str, str]:
    admin_id = world.create_user("root@example.com", role="admin")
    return world.admin_headers(admin_id)


def test_powertools_debug_does_not_write_a_key_pasted_where_the_key_id_goes(world, admin):
    """With POWERTOOLS_DEBUG on (Powertools' troubleshooting switch, whose package logger
    writes to stdout and so to CloudWatch), on-call revoking a leaked key by pasting the
    whole key into /admin/api-keys/{key_id}/revoke must not have the key written: the
    audit trail cuts it out, and the debug lines must not copy it either."""
    from aws_lambda_powertools.logging.logger import set_package_logger

    owner = world.create_user("partner@example.com")
    leaked = world.create_key(owner)
    secret_part = leaked.split("_", 2)[2]
    package = logging.getLogger("aws_lambda_powertools")
    before = (package.level, package.propagate, list(package.handlers))
    debug_lines = io.StringIO()
    set_package_logger(stream=debug_lines)
    try:
        answer = call_api(
            "POST", f"/admin/api-keys/{leaked}/revoke", headers=admin, source_ip=ADMIN_IP
        )
    finally:
        package.setLevel(before[0])
        package.propagate = before[1]
        package.handlers[:] = before[2]
    assert answer.status == 404
    assert secret_part not in debug_lines.getvalue()
