"""A moto server over HTTP for the test session: boto3 reaches it through AWS_ENDPOINT_URL."""

from __future__ import annotations

import urllib.request

from ops.moto import REGION, running_moto_server, use_fake_credentials

__all__ = ["REGION", "reset_moto", "running_moto_server", "use_fake_credentials"]


def reset_moto(endpoint: str) -> None:
    """Drop every resource the server holds, so tests do not see each other's state."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback URL
        response.read()
