"""Who set the alarm off: offending client addresses and how much each offended.

- rate alarm: the keys WAF's rate-based rule is limiting right now
  (GetRateBasedStatementManagedKeys, v4 and v6);
- blocked-requests alarm: WAF log records with action BLOCK in the alarm window,
  except those the auto-block rules themselves terminated (so blocks do not feed
  on themselves);
- failed-sign-ins alarm: the API's failed sign-in log lines in the window whose
  reason is evidence against the address (names.SIGN_IN_EVIDENCE_REASONS: not the
  refusal of an account that anyone's guesses locked).

Log records come from Logs Insights queries, polled to completion within a
deadline. The query narrows the records server-side, and the records are checked
again here before they count: a record that is not what the query asked for never
makes anyone an offender. A query returns at most 10,000 rows, newest first; a
window with more records is read in pages, each ending where the one before
stopped (`WindowScan`), so a large attack is counted whole rather than only its
newest 10,000 records, in which every address may stay under the threshold.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.shared import names
from functions.shared.aws_clients import BACKGROUND, client_config, new_client
from functions.shared.blocks import HOST_PREFIX, aws_client
from functions.shared.observability import logger
from functions.shared.settings import AlarmKind, IPNetwork, get_settings

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_wafv2 import WAFV2Client

# Logs Insights returns at most this many rows per query.
INSIGHTS_ROW_LIMIT = 10_000
# Pages of a window read at most (records counted: this times the row limit); all
# of them within one query deadline.
MAX_QUERY_PAGES = 10
POLL_INTERVAL_SECONDS = 0.5
AUTO_BLOCK_RULES = frozenset({names.AUTO_BLOCK_RULE_V4, names.AUTO_BLOCK_RULE_V6})


class OffenderLookupFailed(Exception):
    pass


# When what was seen of an address last stopped counting against it, if it did
# (epoch seconds): an operator's release covering it, or the end of a block of it
# that ran out (decide.clearing_times).
ClearedAt = Callable[[IPNetwork], int | None]


@dataclass(frozen=True)
class Offender:
    network: IPNetwork
    requests: int
    last_seen: int  # epoch seconds
    country: str | None = None
    # (time its evidence was cleared, records newer than it), when a release or a
    # block that ran out covered the address as the records were counted: only those
    # records are evidence against it now.
    after_cleared: tuple[int, int] | None = None
    # Its earliest evidence (epoch seconds); 0 when the evidence carries no times.
    first_seen: int = 0

    def requests_after(self, cleared_at: int) -> int:
        """The evidence newer than `cleared_at` (a release, or a block's end).

        Counted while aggregating for the time known then. For any other time (a
        release made, or a block run out, while the records were read) nothing is
        known to be newer: it counts as none, and the next look counts again.
        """
        if self.after_cleared is not None and self.after_cleared[0] == cleared_at:
            return self.after_cleared[1]
        return 0


@dataclass(frozen=True)
class OffenderReport:
    offenders: list[Offender]
    source: str
    records: int = 0
    # Records of the window were left unread (WindowScan): counts are from the most
    # recent records only.
    truncated: bool = False
    # What made an offender: this many of `evidence` in the window (log evidence), or
    # the rate rule's own decision (threshold 1, no evidence named).
    threshold: int = 1
    evidence: str = ""


@dataclass
class _Tally:
    requests: int = 0
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    country: str | None = None
    # When this address's evidence was last cleared, as known when it was first seen
    # (epoch seconds), and how many records are newer than that: made in a later
    # second, as those times are whole seconds and a record of the same second may
    # precede it.
    cleared_at: int | None = None
    after_cleared: int = 0

    def count(self, stamp_ms: int | None) -> None:
        self.requests += 1
        if stamp_ms is None:
            return
        self.last_seen_ms = max(self.last_seen_ms, stamp_ms)
        self.first_seen_ms = earliest_known(self.first_seen_ms, stamp_ms)
        if self.cleared_at is not None and stamp_ms // 1000 > self.cleared_at:
            self.after_cleared += 1


def earliest_known(one: int, other: int) -> int:
    """The earlier of two times where 0 means none known."""
    return min(one, other) if one and other else one or other


def _new_tally(
    raw: str, cleared_at: ClearedAt | None, ipv6_prefix: int, country: str | None = None
) -> _Tally:
    # Parsed once per distinct address, and only when clearings are asked about.
    cleared = None
    if cleared_at is not None:
        network = _offending_network(raw, ipv6_prefix)
        cleared = cleared_at(network) if network is not None else None
    return _Tally(country=country, cleared_at=cleared)


def _offending_network(raw: str, ipv6_prefix: int) -> IPNetwork | None:
    """What an address offends as: its IPv4 host, or its IPv6 network of `ipv6_prefix`
    bits (a client holds a whole /64 and can change address inside it at will)."""
    host = _host(raw)
    if host is not None and host.version == 6 and host.prefixlen > ipv6_prefix:
        return host.supernet(new_prefix=ipv6_prefix)
    return host


def _host(raw: str) -> IPNetwork | None:
    # One spelling per host, as a manual block or unblock would write it: no IPv6
    # zone id (which a target refuses, so no unblock could name the block) and an
    # IPv4-mapped address as its IPv4 one (where the protected lists are checked).
    try:
        address = ipaddress.ip_address(raw.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return ipaddress.ip_network((address, HOST_PREFIX[address.version]))


def _finish(tallies: dict[str, _Tally], threshold: int, ipv6_prefix: int) -> list[Offender]:
    """Canonicalise the raw address strings, merge spellings and the addresses of one
    IPv6 network, drop the unparseable."""
    merged: dict[IPNetwork, _Tally] = {}
    for raw, tally in tallies.items():
        network = _offending_network(raw, ipv6_prefix)
        if network is None:
            continue
        into = merged.setdefault(network, _Tally(cleared_at=tally.cleared_at))
        into.requests += tally.requests
        into.last_seen_ms = max(into.last_seen_ms, tally.last_seen_ms)
        into.first_seen_ms = earliest_known(into.first_seen_ms, tally.first_seen_ms)
        into.country = into.country or tally.country
        into.after_cleared += tally.after_cleared
    offenders = [
        Offender(
            n,
            t.requests,
            t.last_seen_ms // 1000,
            t.country,
            after_cleared=None if t.cleared_at is None else (t.cleared_at, t.after_cleared),
            first_seen=t.first_seen_ms // 1000,
        )
        for n, t in merged.items()
        if t.requests >= threshold
    ]
    offenders.sort(key=lambda o: (-o.requests, -o.last_seen, str(o.network)))
    return offenders


def aggregate_waf_records(
    records: Iterable[str | dict[str, Any]],
    *,
    threshold: int,
    cleared_at: ClearedAt | None = None,
    ipv6_prefix: int = 128,
) -> tuple[list[Offender], int]:
    """Count BLOCK records per client address; returns offenders at or over `threshold`.

    `cleared_at`: when an address's evidence was last cleared (an operator's release,
    a block that ran out), whose newer records are counted apart
    (Offender.after_cleared). `ipv6_prefix`: IPv6 addresses count per
    network of this many bits.

    Streams: memory grows with the number of distinct addresses, not records.
    Counting is keyed on the raw address text and parsed once per distinct key,
    since parsing every record's address would dominate the cost.
    """
    tallies: dict[str, _Tally] = {}
    seen = 0
    for record in records:
        seen += 1
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except ValueError:
                continue
        if not isinstance(record, dict) or record.get("action") != "BLOCK":
            continue
        if record.get("terminatingRuleId") in AUTO_BLOCK_RULES:
            continue
        request = record.get("httpRequest")
        if not isinstance(request, dict):
            continue
        client_ip = request.get("clientIp")
        if not isinstance(client_ip, str):
            continue
        tally = tallies.get(client_ip)
        if tally is None:
            tally = tallies[client_ip] = _new_tally(
                client_ip, cleared_at, ipv6_prefix, request.get("country")
            )
        stamp = record.get("timestamp")
        tally.count(stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None)
    return _finish(tallies, threshold, ipv6_prefix), seen


def aggregate_failed_sign_ins(
    lines: Iterable[tuple[str, int]],
    *,
    threshold: int,
    cleared_at: ClearedAt | None = None,
    ipv6_prefix: int = 128,
) -> tuple[list[Offender], int]:
    """Count the API's failed sign-in lines per caller; `lines` are (message, epoch ms);
    `cleared_at` and `ipv6_prefix` as for aggregate_waf_records."""
    tallies: dict[str, _Tally] = {}
    seen = 0
    for message, stamp_ms in lines:
        seen += 1
        try:
            line = json.loads(message)
        except ValueError:
            continue
        if not isinstance(line, dict) or line.get("auth_event") != names.AUTH_EVENT_SIGN_IN_FAILED:
            continue
        # A refusal of an account someone else's guesses locked is no evidence
        # against the address its owner signs in from.
        if line.get("reason") not in names.SIGN_IN_EVIDENCE_REASONS:
            continue
        source_ip = line.get("source_ip")
        if not isinstance(source_ip, str):
            continue
        tally = tallies.get(source_ip)
        if tally is None:
            tally = tallies[source_ip] = _new_tally(source_ip, cleared_at, ipv6_prefix)
        tally.count(stamp_ms)
    return _finish(tallies, threshold, ipv6_prefix), seen


# --- Logs Insights ----------------------------------------------------------------

WAF_BLOCKS_QUERY = (
    "fields @timestamp, @message"
    ' | filter action = "BLOCK"'
    f' and terminatingRuleId != "{names.AUTO_BLOCK_RULE_V4}"'
    f' and terminatingRuleId != "{names.AUTO_BLOCK_RULE_V6}"'
    " | sort @timestamp desc"
)
FAILED_SIGN_INS_QUERY = (
    "fields @timestamp, @message"
    f' | filter auth_event = "{names.AUTH_EVENT_SIGN_IN_FAILED}"'
    f' and reason != "{names.SIGN_IN_ACCOUNT_LOCKED}"'
    " | sort @timestamp desc"
)


def _logs() -> CloudWatchLogsClient:
    client: CloudWatchLogsClient = aws_client("logs")
    return client


def _insights_stamp_ms(value: str) -> int:
    # Insights returns "2026-11-29 13:45:00.123" (UTC); some emulators return epoch ms.
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(parsed.timestamp() * 1000)


def run_insights_query(
    log_group: str, query: str, start: int, end: int, *, deadline_seconds: float
) -> list[tuple[str, int]]:
    """Run one query over [start, end] (epoch seconds); (message, epoch ms) per row.

    Polls until the query completes; past the deadline the query is stopped and
    the lookup fails, so a stuck query cannot hold the responder until timeout.
    """
    logs = _logs()
    query_id = logs.start_query(
        logGroupName=log_group, startTime=start, endTime=end, queryString=query
    )["queryId"]
    give_up = time.monotonic() + deadline_seconds
    while True:
        answer = logs.get_query_results(queryId=query_id)
        status = answer["status"]
        if status == "Complete":
            break
        if status in ("Failed", "Cancelled", "Timeout", "Unknown"):
            raise OffenderLookupFailed(f"Logs Insights query on {log_group} ended {status}")
        if time.monotonic() >= give_up:
            # Best effort: the query is abandoned either way, and a failure to
            # stop it must not hide the timeout itself.
            with contextlib.suppress(ClientError):
                logs.stop_query(queryId=query_id)
            raise OffenderLookupFailed(
                f"Logs Insights query on {log_group} still running after {deadline_seconds}s"
            )
        time.sleep(POLL_INTERVAL_SECONDS)
    rows = []
    for row in answer.get("results", []):
        cells = {cell.get("field"): cell.get("value", "") for cell in row}
        message = cells.get("@message")
        if message:
            rows.append((message, _insights_stamp_ms(cells.get("@timestamp") or "0")))
    return rows


@dataclass
class WindowScan:
    """The rows of one query over a whole window, read page by page as they are used.

    `query` sorts newest first; each page adds its row limit. Each page is the query
    over [start, cut]: the first ends at the window's end, each next one at the
    second its predecessor's oldest row fell in (Insights' bounds are whole seconds),
    keeping only rows older than that second, so no record is counted twice or
    skipped. `truncated`: records of the window were left unread (the page limit,
    the deadline, a later page refused, or a page that cannot be split: one second
    filling it, or a time that could not be read).
    """

    log_group: str
    query: str
    start: int
    end: int
    deadline_seconds: float
    max_pages: int = MAX_QUERY_PAGES
    row_limit: int = INSIGHTS_ROW_LIMIT
    rows_read: int = 0
    pages: int = 0
    truncated: bool = False

    def __iter__(self) -> Iterator[tuple[str, int]]:
        give_up = time.monotonic() + self.deadline_seconds
        cut: int | None = None  # later pages: only rows older than this second (epoch s)
        while True:
            remaining = give_up - time.monotonic()
            if self.pages and remaining <= 0:
                self.truncated = True
                return
            try:
                page = run_insights_query(
                    self.log_group,
                    f"{self.query} | limit {self.row_limit}",
                    self.start,
                    self.end if cut is None else cut,
                    deadline_seconds=max(remaining, POLL_INTERVAL_SECONDS),
                )
            except (OffenderLookupFailed, ClientError, BotoCoreError):
                # A later page may be refused too (throttling, the account's limit of
                # concurrent queries): the pages read still count.
                if not self.pages:
                    raise
                # The newest records are read already: count them, and say the rest
                # were not.
                logger.warning(
                    "a later page of a Logs Insights window failed; the pages read count",
                    extra={"log_group": self.log_group, "pages": self.pages},
                )
                self.truncated = True
                return
            self.pages += 1
            full = len(page) >= self.row_limit
            rows = page if cut is None else [row for row in page if row[1] < cut * 1000]
            if not full:
                self.rows_read += len(rows)
                yield from rows
                return
            # A full page: rows of its oldest second may continue past it. Count the
            # newer ones and read that second again with the next page. A row whose
            # time could not be read (0) says nothing of where the page ends.
            oldest_second = min((stamp for _, stamp in rows), default=0) // 1000
            newer = [row for row in rows if row[1] >= (oldest_second + 1) * 1000]
            if not newer or oldest_second <= 0 or self.pages >= self.max_pages:
                # One second fills a page, or no more pages may be read.
                self.rows_read += len(rows)
                self.truncated = True
                yield from rows
                return
            self.rows_read += len(newer)
            yield from newer
            cut = oldest_second + 1


def _messages(rows: Iterable[tuple[str, int]]) -> Iterator[str]:
    return (message for message, _ in rows)


# --- Rate-based rule keys ---------------------------------------------------------


@lru_cache(maxsize=4)
def _rate_keys_client_for(region: str, endpoint_url: str | None, attempts: int) -> WAFV2Client:
    # A client of its own: GetRateBasedStatementManagedKeys is the one WAF call
    # moto lacks, and tests stub exactly this client and nothing else.
    client: WAFV2Client = new_client(
        "wafv2",
        region_name=region,
        endpoint_url=endpoint_url,
        config=client_config(replace(BACKGROUND, max_attempts=attempts)),
    )
    return client


def rate_keys_client() -> WAFV2Client:
    s = get_settings()
    return _rate_keys_client_for(s.region, s.aws_endpoint_url, s.aws_max_attempts)


@lru_cache(maxsize=4)
def _web_acl_id(name: str, scope: str, region: str, endpoint_url: str | None) -> str:
    wafv2: WAFV2Client = aws_client("wafv2")
    kwargs: dict[str, Any] = {"Scope": scope, "Limit": 100}
    while True:
        page = wafv2.list_web_acls(**kwargs)
        for summary in page.get("WebACLs", []):
            if summary["Name"] == name:
                return summary["Id"]
        marker = page.get("NextMarker")
        if not marker or not page.get("WebACLs"):
            raise OffenderLookupFailed(f"web ACL {name} ({scope}) does not exist")
        kwargs["NextMarker"] = marker


def rate_limited_offenders(now: int) -> OffenderReport:
    s = get_settings()
    acl_id = s.web_acl_id or _web_acl_id(s.web_acl_name, s.waf_scope, s.region, s.aws_endpoint_url)
    answer = rate_keys_client().get_rate_based_statement_managed_keys(
        Scope=s.waf_scope, WebACLName=s.web_acl_name, WebACLId=acl_id, RuleName=s.rate_rule_name
    )
    offending: dict[IPNetwork, None] = {}
    for key in ("ManagedKeysIPV4", "ManagedKeysIPV6"):
        for cidr in answer.get(key, {}).get("Addresses", []):  # type: ignore[attr-defined]
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            # WAF reports each limited client as a host CIDR; anything wider is not a client.
            if network.prefixlen == HOST_PREFIX[network.version]:
                found = _offending_network(str(network.network_address), s.ipv6_offender_prefix)
                if found is not None:
                    offending[found] = None
    offenders = [Offender(network, requests=0, last_seen=now) for network in offending]
    return OffenderReport(offenders, source=f"rate rule {s.rate_rule_name}")


# --- By alarm kind ----------------------------------------------------------------


def find_offenders(
    kind: AlarmKind,
    *,
    window_end: int,
    period_seconds: int | None,
    cleared_at: ClearedAt | None = None,
) -> OffenderReport:
    """The offenders behind one alarm of `kind`, over the window ending at `window_end`;
    log evidence newer than the time it was last cleared (`cleared_at`: an operator's
    release, a block that ran out) is counted apart."""
    s = get_settings()
    if kind == "waf-rate":
        return rate_limited_offenders(window_end)
    window = max(s.offender_window_seconds, period_seconds or 0)
    start = window_end - window
    if kind == "waf-blocked":
        threshold, evidence = s.blocked_requests_threshold, "blocked requests"
        scan = WindowScan(
            s.waf_log_group, WAF_BLOCKS_QUERY, start, window_end, s.logs_query_deadline_seconds
        )
        offenders, seen = aggregate_waf_records(
            _messages(scan),
            threshold=threshold,
            cleared_at=cleared_at,
            ipv6_prefix=s.ipv6_offender_prefix,
        )
        source = f"WAF log {s.waf_log_group}"
    else:
        threshold, evidence = s.failed_sign_ins_threshold, "failed sign-ins"
        scan = WindowScan(
            s.api_log_group, FAILED_SIGN_INS_QUERY, start, window_end, s.logs_query_deadline_seconds
        )
        offenders, seen = aggregate_failed_sign_ins(
            scan,
            threshold=threshold,
            cleared_at=cleared_at,
            ipv6_prefix=s.ipv6_offender_prefix,
        )
        source = f"API log {s.api_log_group}"
    return OffenderReport(
        offenders,
        source=source,
        records=seen,
        truncated=scan.truncated,
        threshold=threshold,
        evidence=evidence,
    )
