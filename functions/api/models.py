"""The base of every model the API's routes accept or return.

`defer_build`: pydantic builds a model's validator and serializer when the model
is first used, not when its module is imported. A cold start imports every
route module to register its routes but serves one route: built eagerly, the
26 models cost about 7 ms of the API's import on the build machine (importtime
self time of the route modules, docs/PERFORMANCE.md), mostly for routes the
request never touches. A model's first validation builds it, once
per process, so only the first request to a route pays for its models.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    # Subclasses' own model_config is merged with this one, so they keep the deferral.
    model_config = ConfigDict(defer_build=True)
