"""The one place that creates the Powertools Logger, Tracer and Metrics.

Every function imports these objects from here so that log format, metric
namespace and service name are the same everywhere.

The Tracer is created on first access (module `__getattr__`): constructing it
imports the X-Ray SDK and botocore, about half a second of cold start. The API
function does not import it and is traced by Lambda active tracing instead
(see docs/ARCHITECTURE.md); the rotation and responder functions, where a
cold start costs nobody a request, use it for subsegments.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "babyshield"
METRICS_NAMESPACE = "BabyShield"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

# botocore's DEBUG records carry request and response bodies: a secret's value, an
# access key. Whatever level a function's or the CLI's logs are raised to while
# debugging (AWS_LAMBDA_LOG_LEVEL, BABYSHIELD_DEBUG), those stay out.
for _library in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_library).setLevel(logging.INFO)
# Likewise Powertools' event handler under POWERTOOLS_DEBUG: its DEBUG lines list each
# route's arguments as received, a whole API key pasted where its id goes included.
logging.getLogger("aws_lambda_powertools.event_handler").setLevel(logging.INFO)

# And POWERTOOLS_LOGGER_LOG_EVENT, which logs every whole event (headers with API keys
# and tokens, sign-in bodies): each handler passes log_event=False, which outranks it.

# A request that records no metric is normal (a health check); Powertools warns
# on every such flush, which would bury real warnings in the logs.
warnings.filterwarnings("ignore", message="No application metrics to publish")


# What the Tracer instruments: every AWS call. Powertools' default patches every
# library the X-Ray SDK supports that is installed, which with our layer imports
# psycopg and sqlite3 into functions that never open a database: 60-100 ms of
# each cold start. psycopg is not patched anywhere: the X-Ray SDK traces a
# statement only through `connection.cursor()`, and our code runs statements with
# `connection.execute()` (inside `with psycopg.connect(...) as conn`, whose target
# is the unwrapped connection), so the patch cost an import and recorded nothing.
TRACED_LIBRARIES = ("botocore",)


@lru_cache(maxsize=1)
def get_tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, patch_modules=TRACED_LIBRARIES)


def __getattr__(name: str) -> Any:
    if name == "tracer":
        return get_tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
