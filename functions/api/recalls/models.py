"""What the recall and subscription endpoints accept and return."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from functions.api.models import CONTROL_CHARACTERS, ApiModel, composed

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# Listed whole on one page: unbounded, the list outgrows a Lambda response (6 MB)
# at about 15,000 and its owner could no longer read or remove them.
MAX_SUBSCRIPTIONS = 100

MAX_PRODUCT_LENGTH = 200
MAX_BRAND_LENGTH = 100

# Runs of spacing inside a name: tab, line breaks and Unicode's spaces, but not the
# control characters Python also counts as space (\x1c-\x1f, \x85): those stay, so
# the logic refuses them (400) rather than a space hiding them.
_SPACING = re.compile(r"(?:[\t\n\r]|[^\S\x00-\x1f\x7f-\x9f])+")
# Invisible at either end of a pasted name: byte order mark, zero-width space and
# joiners, direction marks, word joiner, soft hyphen, Mongolian vowel separator.
_INVISIBLE_ENDS = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
# Blank on screen though their category is a letter or a mark: Unicode's fillers and
# selectors (Default_Ignorable_Code_Point, which unicodedata does not expose) and the
# blank braille pattern. Format, control and separator characters are found by category.
_BLANK = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0100-\U000e01ef]"
)
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _shows_something(value: str) -> bool:
    return any(
        unicodedata.category(char) not in _BLANK_CATEGORIES and not _BLANK.match(char)
        for char in value
    )


def _watch_name(max_length: int) -> Callable[[str], str]:
    """A watched name as stored and compared: composed (NFC), spacing runs as one
    space, invisible characters trimmed from the ends. Two spaces, a tab or a line
    break between "Baby" and "gate", or a pasted byte order mark before it, name the
    one product the search finds for each. A name of blanks only is refused, as an
    empty one is. The bounds hold for this form: composition turns some characters
    into three (U+FB2C)."""

    def normalise(value: str) -> str:
        if CONTROL_CHARACTERS.search(value):
            return value  # refused by the logic, with its own message
        name = _SPACING.sub(" ", composed(value)).strip(" " + _INVISIBLE_ENDS)
        if not _shows_something(name):
            raise PydanticCustomError("string_too_short", "a name must show something")
        if len(name) > max_length:
            raise PydanticCustomError("string_too_long", "the name is too long")
        return name

    return normalise


ProductName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PRODUCT_LENGTH),
    AfterValidator(_watch_name(MAX_PRODUCT_LENGTH)),
]
BrandName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BRAND_LENGTH),
    AfterValidator(_watch_name(MAX_BRAND_LENGTH)),
]


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
