"""The header limits (MAX_HEADER_BYTES, MAX_TOTAL_HEADER_BYTES) count bytes, as their
names and API Gateway's own limits do: a value of non-ASCII characters is up to four
bytes a character, and counted as one each it passed at up to four times the limit."""

from __future__ import annotations

import pytest

from tests.support.api import call_api


@pytest.fixture(autouse=True)
def _small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_HEADER_BYTES", "400")
    monkeypatch.setenv("MAX_TOTAL_HEADER_BYTES", "4000")


def test_a_header_over_the_limit_in_bytes_is_431_though_under_it_in_characters():
    # 150 characters, 600 bytes in UTF-8
    answer = call_api("GET", "/health", headers={"X-Note": "\U0001f476" * 150})
    assert answer.status == 431


def test_the_same_number_of_ascii_characters_passes():
    answer = call_api("GET", "/health", headers={"X-Note": "b" * 150})
    assert answer.status == 200


def test_the_total_counts_bytes_too():
    # Ten headers of 100 characters, each 300 bytes: 3,000 characters of headers
    # but 3,000 bytes more than that.
    headers = {f"X-Note-{i}": "\u20ac" * 100 for i in range(10)}
    headers.update({f"X-Pad-{i}": "\u20ac" * 30 for i in range(12)})
    assert call_api("GET", "/health", headers=headers).status == 431
