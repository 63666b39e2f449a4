"""`detect` remembers the verdict on short values; long ones are scanned every time."""

from __future__ import annotations

from functools import lru_cache

import pytest

from functions.api import inspection


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every value the uncached scan sees, with the cache emptied before and after."""
    seen: list[str] = []
    real = inspection._scan_cached.__wrapped__

    def counting(value: str) -> inspection.Detection | None:
        seen.append(value)
        return real(value)

    cached = lru_cache(maxsize=inspection._scan_cached.cache_info().maxsize)(counting)
    monkeypatch.setattr(inspection, "_scan_cached", cached)
    monkeypatch.setattr(inspection, "scan", counting)
    return seen


def test_a_repeated_short_value_is_scanned_once_with_the_same_verdict(scans: list[str]):
    # Given a path and an attack, each inspected three times
    verdicts = [inspection.detect(v) for v in ["/recalls", "' or 1=1 --"] * 3]

    # Then each was scanned once and every verdict is the scanner's own
    assert scans == ["/recalls", "' or 1=1 --"]
    assert verdicts[0] is None
    assert verdicts[2] is None
    assert verdicts[1] == verdicts[3] == inspection.scan("' or 1=1 --")
    assert verdicts[1] is not None


def test_a_long_value_is_never_kept(scans: list[str]):
    # Given a value longer than the cache keeps
    long_value = "crib " * (inspection._CACHED_LENGTH // 5 + 1)

    # When it is inspected twice
    inspection.detect(long_value)
    inspection.detect(long_value)

    # Then it was scanned both times, and the cache holds nothing
    assert scans == [long_value, long_value]
    assert inspection._scan_cached.cache_info().currsize == 0


def test_the_cache_is_bounded():
    info = inspection._scan_cached.cache_info()
    assert info.maxsize is not None
    assert info.maxsize * inspection._CACHED_LENGTH <= 1_000_000
