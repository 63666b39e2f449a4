"""The base of every model the API's routes accept or return.

`defer_build`: pydantic builds a model's validator and serializer when the model
is first used, not when its module is imported. A cold start imports every
route module to register its routes but serves one route: built eagerly, the
models of the admin, sign-in and webhook routes cost about 25 ms of the API's
cold start on the build machine (`make bench`, docs/PERFORMANCE.md) for a
request that never touches them. A model's first validation builds it, once
per process, so only the first request to a route pays for its models.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    # Subclasses' own model_config is merged with this one, so they keep the deferral.
    model_config = ConfigDict(defer_build=True)
