"""What the recall and subscription endpoints accept and return."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints

from functions.api.models import ApiModel

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# Listed whole on one page: unbounded, the list outgrows a Lambda response (6 MB)
# at about 15,000 and its owner could no longer read or remove them.
MAX_SUBSCRIPTIONS = 100

ProductName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
BrandName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Recall(ApiModel):
    id: int
    source_id: str
    product: str
    brand: str
    hazard: str
    remedy: str
    recall_date: date
    description: str | None = None
    country: str | None = None
    url: str | None = None


class RecallPage(ApiModel):
    items: list[Recall]
    # Opaque: pass it back as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


class RecallSearch(ApiModel):
    """A validated search: every field is bound as a parameter, never spliced into SQL."""

    model_config = ConfigDict(frozen=True)

    q: str | None = None
    brand: str | None = None
    since: date | None = None
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    after: tuple[date, int] | None = None


class NewSubscription(ApiModel):
    model_config = ConfigDict(extra="forbid")

    product: ProductName
    brand: BrandName | None = None


class Subscription(ApiModel):
    id: UUID
    product: str
    brand: str | None = None
    created_at: datetime


class SubscriptionList(ApiModel):
    items: list[Subscription]
