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

import re
import unicodedata
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict


class ApiModel(BaseModel):
    # Subclasses' own model_config is merged with this one, so they keep the deferral.
    model_config = ConfigDict(defer_build=True)


# What the API reads as a number or a date is written one way. pydantic's lax mode
# reads more: `since=1735689600` as a Unix time, `limit=1_0` as 10, `true` as 1.
# Those are a client's bug or a probe; either way a 422 says so.
_DIGITS = re.compile(r"[0-9]{1,9}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")

# C0 and C1 control characters and DEL, but tab, line feed and carriage return:
# what a terminal or log viewer acts on (an escape sequence, the one-byte CSI) rather
# than shows. No product, brand or search needs them; text that users or the feed
# send with them is refused, so no client of GET /recalls is ever served one.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("a date is written YYYY-MM-DD")


def _digits(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise ValueError("a whole number in digits")


# Beyond 2**53 a float no longer holds every whole number exactly.
_EXACT_FLOAT_LIMIT = 2**53


def _json_whole_number(value: Any) -> Any:
    # JSON Schema's `integer`, which the OpenAPI document states, is any number
    # with no fractional part: `3600.0` is one (Python's json.dumps writes a float
    # that way). The strict int that follows refuses everything else.
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
        return int(value)
    return value


def _iso_timestamp(value: Any) -> Any:
    # A date and a time of day first: pydantic would read "1764374400" as Unix time.
    if isinstance(value, str) and _ISO_DATE_TIME.match(value):
        return value
    raise ValueError("a timestamp is an ISO 8601 string")


def _printable(value: str) -> str:
    if CONTROL_CHARACTERS.search(value):
        raise ValueError("text may not hold control characters")
    return value


# A calendar date, YYYY-MM-DD only.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
# A query parameter that is a whole number: digits only (no sign, `_`, `.` or spaces).
# Written `Annotated[int, Field(ge=1, le=100), Query(), Digits]`: beside a Field,
# Powertools keeps the whole annotation, and with the validator after the bounds
# pydantic still runs it first but documents them as minimum and maximum.
Digits = BeforeValidator(_digits)
# A JSON number that is a whole number (`3600` or `3600.0`): not a boolean, a
# string or a number with a fraction. Written `Annotated[int, Field(strict=True,
# ge=..., le=...), WholeNumber]`: with the validator after the bounds the document
# states them as minimum and maximum (before them, pydantic writes its own keys).
WholeNumber = BeforeValidator(_json_whole_number)
# An ISO 8601 date-time string (not a number of seconds, nor one written as a string).
IsoTimestamp = BeforeValidator(_iso_timestamp)
# Text without control characters (CONTROL_CHARACTERS).
Printable = AfterValidator(_printable)


def composed(value: str) -> str:
    """Text in Unicode's composed form (NFC): "é" as one code point, as keyboards type
    it. A feed that sends "e" plus a combining accent would otherwise store a product
    no search for what users type finds."""
    return unicodedata.normalize("NFC", value)


# Stored or searched text, in composed form (`composed`).
Composed = AfterValidator(composed)
