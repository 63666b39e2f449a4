"""Read what the Powertools logger and metrics wrote, as the JSON lines CloudWatch would get."""

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


def emf_metrics(stdout: str) -> dict[str, float]:
    """Every metric in the embedded-metric documents of `stdout`, summed by name."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                total = sum(value) if isinstance(value, list) else value
                values[metric["Name"]] = values.get(metric["Name"], 0) + total
    return values
