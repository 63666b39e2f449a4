"""The scheduled sweep: expired blocks leave the IP sets; anything missing is put back.

The sweep is one sync of the IP sets to the registry's live entries, so it also
repairs a responder that died between its registry write and its IP set update,
and removes any address the registry does not hold.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared import names
from functions.shared.blocks import SyncReport, sync_ip_sets
from functions.shared.observability import logger, metrics


def sweep(now: float | None = None) -> dict[str, Any]:
    return summarise(swept_sets(now))


def swept_sets(now: float | None = None) -> SyncReport:
    """The sweep's sync: the IP sets made equal to the registry's live entries."""
    return sync_ip_sets(now=time.time() if now is None else now)


def summarise(report: SyncReport) -> dict[str, Any]:
    """The sweep's metrics, log lines and answer, from its sync's report."""
    removed = sorted(ip for ips in report.removed.values() for ip in ips)
    added = sorted(ip for ips in report.added.values() for ip in ips)
    metrics.add_metric(name=names.METRIC_WAF_IPS_EXPIRED, unit=MetricUnit.Count, value=len(removed))
    metrics.add_metric(
        name=names.METRIC_WAF_LOCK_RETRIES, unit=MetricUnit.Count, value=report.lock_retries
    )
    if added:
        logger.warning(
            "sweep re-applied blocks missing from the IP sets", extra={"restored": len(added)}
        )
    if report.protected:
        # Blocked before a protected list gained them: kept out of the sets, and their
        # rows stay until they expire or are unblocked.
        logger.warning(
            "live blocks left out of the IP sets: on a protected list now",
            extra={"protected": [b.ip for b in report.protected[:100]]},
        )
    logger.info(
        "expiry sweep done",
        extra={"removed": len(removed), "restored": len(added), "entries": report.entries},
    )
    return {
        "status": "swept",
        "removed": removed,
        "restored": added,
        "entries": {str(v): n for v, n in report.entries.items()},
        "left_out": [b.ip for b in report.left_out],
        "protected": [b.ip for b in report.protected],
    }
