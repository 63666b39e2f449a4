"""A window with more log records than one Logs Insights query returns is read in
pages (offenders.WindowScan), against the moto server's Insights: every record once,
none twice, and `truncated` exactly when some were left unread. Pages here are a few
rows (`row_limit`) where AWS's are 10,000."""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest

from functions.shared import names
from functions.waf_responder.offenders import WAF_BLOCKS_QUERY, WindowScan
from tests.support.waf import WafResources, put_log_lines, waf_record


def _put(per_second: dict[int, int], base_ms: int) -> list[str]:
    """`per_second[s]` records in second base+s; returns their addresses in order."""
    addresses = []
    for second, n in per_second.items():
        ips = [f"198.18.{second}.{i}" for i in range(n)]
        stamp = base_ms + second * 1000 + 250
        put_log_lines(
            names.WAF_LOG_GROUP,
            [json.dumps(waf_record(ip, at_ms=stamp)) for ip in ips],
            at_ms=stamp,
        )
        addresses += ips
    return addresses


def _scan(base_s: int, **kwargs) -> WindowScan:
    return WindowScan(
        names.WAF_LOG_GROUP, WAF_BLOCKS_QUERY, base_s - 1, base_s + 60, 30.0, **kwargs
    )


def _clients(scan: WindowScan) -> list[str]:
    return [json.loads(message)["httpRequest"]["clientIp"] for message, _ in scan]


def test_every_record_of_a_window_larger_than_a_page_is_read_once(waf: WafResources):
    # Given 14 records over 6 seconds, no second holding a page
    base_s = int(time.time()) - 120
    written = _put({0: 3, 1: 2, 2: 1, 3: 3, 4: 2, 5: 3}, base_s * 1000)
    # When they are read in pages of 4 rows
    scan = _scan(base_s, row_limit=4)
    read = _clients(scan)
    # Then each record is read exactly once, in several pages, and nothing is missing
    assert sorted(read) == sorted(written)
    assert scan.pages > 1
    assert scan.rows_read == len(written)
    assert scan.truncated is False


def test_a_window_that_fits_one_page_is_one_query(waf: WafResources):
    base_s = int(time.time()) - 120
    written = _put({0: 2, 1: 1}, base_s * 1000)
    scan = _scan(base_s, row_limit=4)
    assert sorted(_clients(scan)) == sorted(written)
    assert (scan.pages, scan.truncated) == (1, False)


def test_one_second_with_more_records_than_a_page_is_read_as_far_as_it_goes(
    waf: WafResources,
):
    """Insights' bounds are whole seconds: a second that fills a page cannot be split."""
    base_s = int(time.time()) - 120
    _put({0: 2, 1: 6}, base_s * 1000)
    scan = _scan(base_s, row_limit=4)
    read = _clients(scan)
    assert len(read) == 4
    assert scan.truncated is True


def test_the_page_limit_stops_the_scan_and_says_so(waf: WafResources):
    base_s = int(time.time()) - 120
    written = _put({0: 3, 1: 3, 2: 3, 3: 3}, base_s * 1000)
    scan = _scan(base_s, row_limit=4, max_pages=2)
    read = _clients(scan)
    # The newest records were counted, the oldest left unread
    assert set(read) < set(written)
    assert {ip for ip in written if ip.startswith("198.18.3.")} <= set(read)
    assert scan.truncated is True


def test_a_later_page_that_fails_keeps_the_pages_read(waf: WafResources, monkeypatch):
    """moto's queries never fail; a later page's failure (a query Insights ends
    `Failed`, or the deadline) is put in by wrapping the query call."""
    from functions.waf_responder import offenders

    base_s = int(time.time()) - 120
    written = _put({0: 3, 1: 3, 2: 3}, base_s * 1000)
    real = offenders.run_insights_query
    calls: list[int] = []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise offenders.OffenderLookupFailed("Logs Insights query ended Failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(offenders, "run_insights_query", second_fails)
    scan = _scan(base_s, row_limit=4)
    read = _clients(scan)
    # The newest second was counted; the scan says the rest was not read
    assert set(read) == {ip for ip in written if ip.startswith("198.18.2.")}
    assert scan.truncated is True


def test_an_attack_larger_than_a_page_blocks_every_offender(waf: WafResources, invoke, monkeypatch):
    """Counted within the newest 10,000 records only, 120 addresses sending 150
    blocked requests each (1.5x a threshold of 100) had about 83 each: the bigger the
    attack, the fewer blocks, and nobody was blocked. Read in pages, all 120 are."""
    import boto3

    from functions.shared.settings import get_settings
    from functions.waf_responder.events import alarm_state_change_event
    from tests.support.aws import REGION
    from tests.support.waf import ip_set_addresses

    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "100")
    get_settings.cache_clear()
    attackers = [f"198.18.{i // 200}.{i % 200 + 1}" for i in range(120)]
    first_ms = (int(time.time()) - 200) * 1000
    logs = boto3.client("logs", region_name=REGION)
    for second in range(150):  # one record of every attacker per second
        stamp = first_ms + second * 1000
        logs.put_log_events(
            logGroupName=names.WAF_LOG_GROUP,
            logStreamName="main",
            logEvents=[
                {"timestamp": stamp, "message": json.dumps(waf_record(ip, at_ms=stamp))}
                for ip in attackers
            ],
        )

    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    assert result["blocked_count"] == len(attackers)
    held = [ipaddress.ip_network(cidr) for cidr in ip_set_addresses(waf, 4)]
    assert all(any(ipaddress.ip_address(ip) in n for n in held) for ip in attackers)


def test_a_full_page_with_an_unreadable_timestamp_does_not_end_the_scan_unflagged(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
):
    """A @timestamp that cannot be read comes back as 0 (offenders._insights_stamp_ms).
    Taken for the page's oldest second, it made the next page [start, 1]: the rest
    of the window dropped (AWS refuses an end before the start) with `truncated`
    False, so on-call was not told the counts were partial."""
    from functions.waf_responder import offenders

    base_s = int(time.time()) - 120
    written = _put({0: 3, 1: 3, 2: 3}, base_s * 1000)
    unreadable = "198.18.2.0"
    real = offenders.run_insights_query

    def one_stamp_unreadable(*args: Any, **kwargs: Any) -> list[tuple[str, int]]:
        rows = real(*args, **kwargs)
        return [(m, 0 if unreadable in m else stamp) for m, stamp in rows]

    monkeypatch.setattr(offenders, "run_insights_query", one_stamp_unreadable)
    scan = _scan(base_s, row_limit=4)
    read = _clients(scan)

    # Every readable record is read once, or the scan says some were not
    assert len(read) == len(set(read))
    missing = {ip for ip in written if ip != unreadable} - set(read)
    assert not missing or scan.truncated, (sorted(missing), scan.pages)


def test_a_later_page_refused_by_the_service_keeps_the_pages_read(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch
):
    """A later StartQuery that AWS refuses (LimitExceededException: the account's
    concurrent Insights queries; ThrottlingException) is a ClientError: it used to
    escape the scan, throwing away the newest records read already and failing the
    whole look. moto refuses nothing; the refusal is put in by wrapping the call."""
    from botocore.exceptions import ClientError

    from functions.waf_responder import offenders

    base_s = int(time.time()) - 120
    written = _put({0: 3, 1: 3, 2: 3}, base_s * 1000)
    real = offenders.run_insights_query
    calls: list[int] = []

    def second_refused(*args: Any, **kwargs: Any) -> list[tuple[str, int]]:
        calls.append(1)
        if len(calls) == 2:
            raise ClientError(
                {"Error": {"Code": "LimitExceededException", "Message": "too many queries"}},
                "StartQuery",
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(offenders, "run_insights_query", second_refused)
    scan = _scan(base_s, row_limit=4)
    read = _clients(scan)
    assert set(read) == {ip for ip in written if ip.startswith("198.18.2.")}
    assert scan.truncated is True
