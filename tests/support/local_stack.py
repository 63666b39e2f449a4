"""The local stack as the tests start it: a private database and roles, no printer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ops.local_stack import DEFAULT_RATE_LIMIT, LocalStackOptions, local_stack
from tests.support.local_server import http_request
from tests.support.postgres import MigratedDatabase, private_database


def stack_options(
    database: MigratedDatabase, rate_limit: int = DEFAULT_RATE_LIMIT
) -> LocalStackOptions:
    return LocalStackOptions(
        port=0,
        rate_limit=rate_limit,
        quiet=True,
        oncall_printer=False,
        admin_conninfo=database.admin_conninfo,
        roles=database.roles,
    )


@contextmanager
def running_stack(cluster: str, rate_limit: int = DEFAULT_RATE_LIMIT) -> Iterator[dict[str, Any]]:
    """Run in a scratch folder (monkeypatch.chdir): the stack writes .babyshield/ there."""
    with (
        private_database(cluster) as database,
        local_stack(stack_options(database, rate_limit)) as state,
    ):
        yield state


def stack_request(
    state: dict[str, Any],
    method: str,
    path: str,
    *,
    source: str = "127.0.0.1",
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], bytes]:
    """A request to the running stack's API over HTTP, from `source`."""
    host, port = state["api_url"].removeprefix("http://").split(":")
    return http_request(
        host, int(port), method, path, body=body, headers=headers, source=source, timeout=timeout
    )
