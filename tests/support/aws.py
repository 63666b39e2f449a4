"""A moto server over HTTP for the test session: boto3 reaches it through AWS_ENDPOINT_URL."""

from __future__ import annotations

from ops.moto import REGION, reset_moto, running_moto_server, use_fake_credentials

__all__ = ["REGION", "reset_moto", "running_moto_server", "use_fake_credentials"]
