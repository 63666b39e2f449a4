"""The one place that creates the Powertools Logger, Tracer and Metrics.

Every function imports these objects from here so that log format, metric
namespace and service name are the same everywhere.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "babyshield"
METRICS_NAMESPACE = "BabyShield"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

# A request that records no metric is normal (a health check); Powertools warns
# on every such flush, which would bury real warnings in the logs.
warnings.filterwarnings("ignore", message="No application metrics to publish")
