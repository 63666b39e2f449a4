"""Read what the Powertools logger wrote, as the JSON lines CloudWatch would get."""

from __future__ import annotations

import json
from typing import Any

import pytest


def json_log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    from functions.shared.observability import logger

    formatter = logger.registered_formatter
    return [json.loads(formatter.format(record)) for record in caplog.records]


def raw_log_text(caplog: pytest.LogCaptureFixture) -> str:
    from functions.shared.observability import logger

    formatter = logger.registered_formatter
    return "\n".join(formatter.format(record) for record in caplog.records)
