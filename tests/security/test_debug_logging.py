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


# The API answering /health with both credentials, in a process of its own: the event
# log switch is read when the handler's module is imported.
_HANDLER_CALL = """
import sys
from ops.apigw import LocalLambdaContext, rest_event
from functions.api.handler import lambda_handler

headers = {"X-API-Key": sys.argv[1], "Authorization": "Bearer " + sys.argv[2]}
answer = lambda_handler(rest_event("GET", "/health", headers=headers), LocalLambdaContext())
print("status", answer["statusCode"], file=sys.stderr)
"""


def test_powertools_event_log_switch_writes_no_key_or_token():
    """POWERTOOLS_LOGGER_LOG_EVENT=true is Powertools' switch for debugging a function's
    input: set on a function whose handler leaves `log_event` to it, every whole event
    goes to CloudWatch at INFO, every caller's X-API-Key and Authorization header and
    every sign-in body with it. Each handler says log_event=False, which outranks it."""
    import os
    import secrets
    import subprocess
    import sys
    from pathlib import Path

    # Built at run time: the repository holds no credential-shaped literal.
    secret_part = secrets.token_hex(16)
    token = secrets.token_urlsafe(30)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POWERTOOLS_", "AWS_LAMBDA_LOG"))
    }
    environment.update(
        AWS_REGION="us-east-1",
        POWERTOOLS_LOG_LEVEL="INFO",  # the functions' level in AWS (cdk/functions.py)
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_LOGGER_LOG_EVENT="true",
    )
    run = subprocess.run(
        [sys.executable, "-c", _HANDLER_CALL, f"bs_{'0' * 16}_{secret_part}", token],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "status 200" in run.stderr, run.stderr[-2000:]
    written = run.stdout + run.stderr
    assert secret_part not in written
    assert token not in written


def test_every_handler_decides_its_event_logging_itself():
    """The API's is proven above; the rotation functions' events name secrets and the
    responder's carry alarm text: none of them leaves the choice to the environment."""
    import ast
    from pathlib import Path

    functions = Path(__file__).resolve().parents[2] / "functions"
    handlers = sorted(functions.glob("*/handler.py"))
    assert len(handlers) >= 7
    for path in handlers:
        decorators = [
            decorator
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name == "lambda_handler"
            for decorator in node.decorator_list
        ]
        calls = [
            decorator
            for decorator in decorators
            if isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "inject_lambda_context"
        ]
        assert len(calls) == 1, f"{path}: inject_lambda_context(...) is not called"
        options = {keyword.arg: keyword.value for keyword in calls[0].keywords}
        log_event = options.get("log_event")
        assert isinstance(log_event, ast.Constant), path
        assert log_event.value is False, path
