"""The one place that creates the Powertools Logger, Tracer and Metrics.

Every function imports these objects from here so that log format, metric
namespace and service name are the same everywhere.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "babyshield"
METRICS_NAMESPACE = "BabyShield"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
