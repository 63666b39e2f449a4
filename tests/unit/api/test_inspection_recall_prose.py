"""Recall prose that uses "in", "is" and "between" as English passes inspection.

SQL's IN, IS and BETWEEN each carry their own right-hand side (`in (1)`, `is not
null`, `between 1 and 3`); read as a bare comparison, "3 in 1 and 4 in 1 cribs" or
'"Summer" or "Summer Infant" is printed' looked like `1 or 1 in 1`, and a search
for convertible cribs, or a feed delivery describing them, was refused with a 400.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from functions.api.inspection import Threat, detect
from tests.support.api import call_api

# Searches and recall descriptions in the words CPSC notices and parents use.
RECALL_PROSE = [
    "3 in 1 or 4 in 1 crib",
    "Delta 3 in 1 and 4 in 1 convertible cribs",
    "stroller 2 or 3 in 1",
    "Models 100 and 200 in 3 colors are included in this recall.",
    "The recall includes model numbers 10234, 10235 and 10236 in 1 pack and 2 packs.",
    "Storkcraft 'Tuscany' or 4 in 1",
    'Dream On Me "Jenny Lind" or 3 in 1 crib',
    "The cord is 6' or 72 in long and can wrap around a child's neck.",
    'Only pillows with tracking labels "ABC" or "ABD" in 2 sizes',
    'The brand name "Summer" or "Summer Infant" is printed on the front of the seat.',
    'The "Boppy" or "Bummzie" is not safe',
    'Date codes "1901" and 2020 between January and March',
]


@pytest.mark.parametrize("text", RECALL_PROSE)
def test_recall_prose_with_in_is_and_between_passes(text: str):
    # Given a search or a recall description that uses the words as English
    # When the detector looks at it
    # Then nothing is found
    assert detect(text) is None


@pytest.mark.parametrize(
    "payload",
    [
        "1 or 1 in (1)",
        "' or 1 in (1)--",
        "' and 1 in (select min(name) from sysobjects)--",
        "' or 'a' in ('a')--",
        "1) or 2 in ( 2",
        "' or 'x' is not null--",
        '" or 1 is not null--',
        "1 or 1 is null",
        "' or 1 is true--",
        "' or 'a' is not distinct from 'a'--",
        "' or 2 between 1 and 3",
        "1 or 5 between 1 and 10",
        "' having 1 in (1)--",
    ],
)
def test_the_sql_forms_of_in_is_and_between_are_still_refused(payload: str):
    detection = detect(payload)
    assert detection is not None
    assert detection.threat is Threat.SQL_INJECTION


@pytest.mark.parametrize("text", RECALL_PROSE[:4])
def test_a_convertible_crib_search_is_served(text: str):
    # Given a parent's search for convertible cribs
    # When it reaches the API
    answer = call_api("GET", "/health", query=f"q={quote(text)}")
    # Then it is answered, not refused
    assert answer.status == 200, answer.body


def test_a_recall_description_in_a_body_passes_inspection():
    # A path with no route: what passes inspection is a 404, what it refuses a 400
    body = json.dumps({"data": {"description": RECALL_PROSE[3], "brand": RECALL_PROSE[9]}})
    answer = call_api(
        "POST", "/no-such-route", headers={"Content-Type": "application/json"}, body=body
    )
    assert answer.status == 404, answer.body


@pytest.mark.parametrize(
    "text",
    [
        'The words "Safety First"--printed in blue--appear on the base.',
        'The label says "Made in China"--not "Made in USA".',
        'Graco "SnugRide"--all models',
        "Kids'--all ages",
    ],
)
def test_a_double_hyphen_dash_right_after_a_quote_passes(text: str):
    # `--` typed as a dash, against a closing quote: not `admin'--`, which ends a
    # query. As `' or 1=1 --` already was: the comment needs a space or the end.
    assert detect(text) is None


@pytest.mark.parametrize(
    "payload",
    ["admin'--", "admin'-- -", "admin'--+", "admin'--\t", "admin')--", "admin'--;", "admin'--1"],
)
def test_a_quote_that_ends_a_query_is_still_refused(payload: str):
    detection = detect(payload)
    assert detection is not None
    assert detection.threat is Threat.SQL_INJECTION
