"""The proxy events built for the local server and the tests hold the request shapes
API Gateway's REST proxy integration sends (docs/ARCHITECTURE.md, "The local stack")."""

from __future__ import annotations

import pytest

from ops.apigw import rest_event


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # A plain `;` splits the query string as `&` does; an encoded one is data
        ("q=crib;limit=1", {"q": ["crib"], "limit": ["1"]}),
        ("q=a%3Bb", {"q": ["a;b"]}),
        # Names and values arrive decoded, `+` as a space
        ("q=baby+crib&brand=O%27Brien", {"q": ["baby crib"], "brand": ["O'Brien"]}),
        # Repeated names keep every value in order; the single map has the last
        ("tag=a&tag=b", {"tag": ["a", "b"]}),
        # A name without a value, or with an empty one, is an empty string
        ("flag&empty=", {"flag": [""], "empty": [""]}),
    ],
)
def test_query_parameters_are_decoded_and_split_as_api_gateway_does(query, expected):
    event = rest_event("GET", "/recalls", query=query)
    assert event["multiValueQueryStringParameters"] == expected
    assert event["queryStringParameters"] == {k: v[-1] for k, v in expected.items()}


def test_the_path_stays_percent_encoded_and_headers_keep_their_case_and_repeats():
    event = rest_event(
        "GET",
        "/recalls/%2E%2E%2Fadmin",
        headers=[("X-Api-Key", "one"), ("Accept", "a"), ("Accept", "b")],
    )
    assert event["path"] == "/recalls/%2E%2E%2Fadmin"
    assert event["multiValueHeaders"] == {"X-Api-Key": ["one"], "Accept": ["a", "b"]}
    assert event["headers"] == {"X-Api-Key": "one", "Accept": "b"}
