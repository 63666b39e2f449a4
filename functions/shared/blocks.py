"""Blocked addresses: the DynamoDB block registry and the WAF auto-block IP sets.

The registry is the source of truth; the IP sets (v4 and v6, as WAF requires) are
made to equal the registry's live entries, never edited entry by entry. The WAF
responder, the `babyshield waf` command and the admin API all go through the
operations at the bottom of this module, so a block looks the same whoever made it.

Why the write order matters: every writer changes the registry first and then
syncs. A sync reads the IP set's LockToken *before* it reads the registry, so a
successful UpdateIPSet proves no other write landed after that registry read;
a WAFOptimisticLockException means one did, and the sync starts over from a fresh
token and a fresh registry read. Two responders therefore end with the union of
their blocks, and a crash between the registry write and the sync is repaired by
whichever sync runs next. A writer that changed the registry writes the IP sets of
the versions it changed even when they already match, so the lock token moves and
a sync planned from a registry read before the change cannot land after it.

The responder claims its blocks with conditional writes (BlockRegistry.claim): a
row is written only if it is still as read, so two responders, or a responder and
an operator's unblock, cannot overwrite each other; the one refused reads again
and decides again.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import secrets
import socket
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from botocore.exceptions import ClientError

from functions.shared import names
from functions.shared.aws_clients import (
    BACKGROUND,
    Timeouts,
    cached_client,
    clear_cached_clients,
    condition_item,
)
from functions.shared.observability import logger
from functions.shared.settings import IPNetwork, canonical_network, get_settings, parse_cidrs

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_wafv2 import WAFV2Client

BlockSource = Literal["auto", "manual"]
KEY_ATTRIBUTE = names.TABLE_PARTITION_KEY
# A fresh random value on every write of a row: a conditional write names the value
# it read, so any write in between (whoever made it) refuses it.
WRITE_ID_ATTRIBUTE = "write_id"

# Narrower than this is an operator's call, never a blanket block: a typo such as
# `10.0.0.0/8` must not take out a whole provider's customers.
MIN_PREFIX = {4: 16, 6: 48}
HOST_PREFIX = {4: 32, 6: 128}
MAX_SYNC_ATTEMPTS = 8
# Conditional writes in flight at once while claiming blocks (under botocore's pool of 10).
CLAIM_WORKERS = 8
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
PROTECTED_LIST_CACHE_SECONDS = 300
# An unblocked address's row stays as a release marker this long: far past any alarm
# window (the offender window or the alarm period: minutes), inside which the evidence
# the operator cleared could be read again.
RELEASE_MEMORY_SECONDS = 24 * 3600
# The sweep's schedule (cdk/detection.py): a change the IP sets could not take at once
# reaches them within this, or at any earlier block or unblock.
SWEEP_PERIOD_MINUTES = 5
# A reason is printed in `babyshield waf list` and the on-call message: a sentence,
# not a document.
MAX_REASON_LENGTH = 500
# Control, format (bidi overrides, zero-width) and line/paragraph separator
# characters: they move the cursor, recolour or reorder a terminal, or break a table.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_DYNAMODB_BATCH = 25
_RETRYABLE_WAF_ERRORS = {
    "WAFOptimisticLockException",
    "WAFInternalErrorException",
    "ThrottlingException",
    "WAFUnavailableEntityException",
}


class BlockError(Exception):
    """A block operation that cannot go ahead; the message is safe to show an operator."""


class InvalidTarget(BlockError):
    pass


class InvalidReason(BlockError):
    pass


class ProtectedAddress(BlockError):
    pass


class ProtectedListUnavailable(BlockError):
    """The allowlist or never-block list could not be read: block nothing rather than guess.

    `parameter` names the SSM parameter when its value is what is wrong."""

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class IpSetSyncFailed(BlockError):
    pass


class RegistryWriteFailed(BlockError):
    """The registry failed partway through one change: the rows in `written_keys` were
    written (their changes took effect and are audited: `changed`), the rest were not.
    Repeating the change is safe: a live block re-applied is not a new offence."""

    def __init__(self, written_keys: frozenset[str], total: int, message: str | None = None):
        super().__init__(
            message
            or f"the block registry failed after {len(written_keys)} of {total} writes: "
            "those took effect; repeat the command for the rest (it is safe to repeat)"
        )
        self.written_keys = written_keys
        self.changed: list[Block] = []


class RegistryOutcomeUnknown(RegistryWriteFailed):
    """Writes whose answers were lost, and whose rows could not be read back: they may
    have taken effect or not (`unknown`, networks). Rows known written are in
    `written_keys` and `changed`, as for RegistryWriteFailed."""

    def __init__(self, written_keys: frozenset[str], unknown: Sequence[str], total: int):
        named = ", ".join(address_text(ip) for ip in unknown)
        known = ", ".join(address_text(ip) for ip in sorted(written_keys))
        super().__init__(
            written_keys,
            total,
            f"outcome unknown for {named}: the block registry's answers to those writes "
            "were lost and reading them back did not succeed, so they may have taken "
            "effect (the sweep then applies them to the WAF) or not; "
            "check `babyshield waf list`"
            + (f" (known to have taken effect: {known})" if known else ""),
        )
        self.unknown = list(unknown)


# --- AWS clients ------------------------------------------------------------------


# An API request's budget while /admin/blocks runs these operations (request_budget);
# otherwise the responder's background budget.
_request_budget: ContextVar[Timeouts | None] = ContextVar("blocks_request_budget", default=None)
# When an API request's IP-set sync must stop retrying (a `_monotonic()` reading), so
# the change is still audited and answered before the function's time runs out.
_request_deadline: ContextVar[float | None] = ContextVar("blocks_request_deadline", default=None)
# The clock deadlines are read on; a test moves its own.
_monotonic = time.monotonic


@contextmanager
def request_budget(timeouts: Timeouts, *, time_left: float | None = None) -> Iterator[None]:
    """Run block operations inside an API request: each AWS call fails within
    `timeouts` (a 503 from the API), not the responder's budget of up to 100 s,
    which would outlast API Gateway's 29 s.

    `time_left` (seconds from now): an IP-set sync starts no attempt, and waits for
    no retry, that could run past it; it gives up instead and the change stays
    pending for the sweep. Without it a contended WAF could keep the retries going
    past the Lambda's timeout, which answers 504 and loses the audit row."""
    budget_token = _request_budget.set(timeouts)
    deadline_token = _request_deadline.set(None if time_left is None else _monotonic() + time_left)
    try:
        yield
    finally:
        _request_deadline.reset(deadline_token)
        _request_budget.reset(budget_token)


def aws_client(service: str) -> Any:
    """One client per service, region, endpoint and retry budget, created on first use."""
    budget = _request_budget.get()
    if budget is None:
        # Timeouts short enough that a stuck call fails well inside the Lambda's timeout;
        # the retry budget is a setting (the responder backs off on its own as well).
        budget = replace(BACKGROUND, max_attempts=get_settings().aws_max_attempts)
    return cached_client(service, budget)


def _dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = aws_client("dynamodb")
    return client


def _wafv2() -> WAFV2Client:
    client: WAFV2Client = aws_client("wafv2")
    return client


# --- Addresses --------------------------------------------------------------------


# IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) name IPv4 clients (settings.canonical_network).
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_target(text: str) -> IPNetwork:
    """An address or CIDR an operator (or a log line) names, as a network.

    A bare address is a host (`/32`, `/128`); an IPv4-mapped IPv6 one is the IPv4
    network it names; a CIDR with host bits set, wider than MIN_PREFIX, or covering
    more than the IPv4-mapped range is refused with a message saying why.
    """
    raw = text.strip()
    _refuse_zone_id(raw)
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        try:
            meant = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise InvalidTarget(f"not an IP address or CIDR: {raw!r}") from exc
        # A typo more often than an intent: say which network it would have been.
        raise InvalidTarget(
            f"{raw!r} has host bits set: the network is {meant}; name that, or one address"
        ) from exc
    if isinstance(network, ipaddress.IPv6Network) and (
        network.prefixlen < _IPV4_MAPPED.prefixlen and _IPV4_MAPPED.subnet_of(network)
    ):
        raise InvalidTarget(
            f"{network} covers every IPv4-mapped address ({_IPV4_MAPPED}); "
            "block IPv4 clients by their IPv4 networks"
        )
    network = canonical_network(network)
    if network.prefixlen < MIN_PREFIX[network.version]:
        raise InvalidTarget(
            f"{network} is wider than /{MIN_PREFIX[network.version]}; "
            "block narrower ranges or change the WAF rules instead"
        )
    return network


def address_text(network: IPNetwork | str) -> str:
    """How a blocked network is shown to people: one address bare (`203.0.113.7`,
    `2001:db8::7`), a wider network as CIDR. Operators type addresses, not /32s, and
    both forms parse back to the same network (parse_target)."""
    if isinstance(network, str):
        network = ipaddress.ip_network(network)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _refuse_zone_id(raw: str) -> None:
    # ipaddress keeps an IPv6 zone id (`fe80::1%eth0`) in a network: the registry
    # would store `fe80::1%eth0/128` and the IP set `fe80::1/128`, one block under two
    # names that no unblock matches. A zone names one host's interface; WAF has none.
    address = raw.split("/", 1)[0]
    if "%" not in address:
        return
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return  # not an address at all: the caller says so
    raise InvalidTarget(
        f"{raw!r} has an IPv6 zone id (the part after %), which means nothing "
        "to the WAF: name the address without it"
    )


def is_unprintable(character: str) -> bool:
    return unicodedata.category(character) in _UNPRINTABLE_CATEGORIES


def check_reason(reason: str) -> str:
    """The reason a block is kept with, stripped; refused when empty, too long or
    holding characters a terminal would act on rather than show."""
    text = reason.strip()
    if not text:
        raise InvalidReason("give a reason for the block")
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidReason(
            f"the reason is {len(text)} characters; at most {MAX_REASON_LENGTH} are kept"
        )
    if any(is_unprintable(c) for c in text):
        raise InvalidReason(
            "the reason holds control characters (newline, tab, escape...); "
            "give it as one line of plain text"
        )
    return text


def _merged_ranges(networks: Iterable[IPNetwork], version: int) -> tuple[list[int], list[int]]:
    """Starts and ends (inclusive) of the address ranges the networks cover, sorted,
    overlapping or adjacent ones merged.

    Each network is packed into one int (start, then size) so the sort and the merge
    allocate no objects the garbage collector has to trace, which keeps large inputs
    linear in practice.
    """
    width = HOST_PREFIX[version]
    shift = width + 1
    size_mask = (1 << shift) - 1
    keys = sorted(
        (int(n.network_address) << shift) | ((1 << (width - n.prefixlen)) - 1)
        for n in networks
        if n.version == version
    )
    starts: list[int] = []
    ends: list[int] = []
    for key in keys:
        start = key >> shift
        end = start + (key & size_mask)
        if ends and start <= ends[-1] + 1:
            if end > ends[-1]:
                ends[-1] = end
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _cidr_blocks(
    starts: Sequence[int], ends: Sequence[int], version: int
) -> tuple[list[int], list[int]]:
    """Starts and prefix lengths of the fewest CIDRs covering exactly the ranges."""
    width = HOST_PREFIX[version]
    out_starts: list[int] = []
    out_prefixes: list[int] = []
    for start, end in zip(starts, ends, strict=True):
        while start <= end:
            # Largest block aligned at `start` that does not run past `end`.
            size_bits = (start & -start).bit_length() - 1 if start else width
            span_bits = (end - start + 1).bit_length() - 1
            bits = min(size_bits, span_bits)
            out_starts.append(start)
            out_prefixes.append(width - bits)
            start += 1 << bits
    return out_starts, out_prefixes


def _aggregate_ranges(networks: Iterable[IPNetwork], version: int) -> tuple[list[int], list[int]]:
    """Starts and prefix lengths of the fewest CIDRs covering exactly the given networks.

    Sort, merge overlapping or adjacent ranges, then cut each range into the
    largest aligned blocks: O(n log n) for the sort, linear after it, and the
    result covers no address that was not given.
    """
    return _cidr_blocks(*_merged_ranges(networks, version), version)


def _cidr_strings(starts: Sequence[int], prefixes: Sequence[int], version: int) -> list[str]:
    if version == 4:
        return [
            f"{socket.inet_ntoa(a.to_bytes(4, 'big'))}/{p}"
            for a, p in zip(starts, prefixes, strict=True)
        ]
    return [f"{ipaddress.IPv6Address(a)}/{p}" for a, p in zip(starts, prefixes, strict=True)]


def cidrs_outside(cidrs: Iterable[str], other: Iterable[str], version: int) -> list[str]:
    """The addresses of `cidrs` that `other` does not cover, as the fewest CIDRs.

    Compares address space, not spellings: IP set entries are aggregated, so one
    address leaving a /31 turns it into a /32 without the other address changing.
    """

    def parsed(texts: Iterable[str]) -> list[IPNetwork]:
        return [ipaddress.ip_network(text, strict=False) for text in texts]

    starts, ends = _merged_ranges(parsed(cidrs), version)
    cut_starts, cut_ends = _merged_ranges(parsed(other), version)
    left_starts: list[int] = []
    left_ends: list[int] = []
    j = 0
    for start, end in zip(starts, ends, strict=True):
        # Skip the cuts that end before this range; the rest are sorted after it.
        while j < len(cut_starts) and cut_ends[j] < start:
            j += 1
        k = j
        while start <= end:
            if k >= len(cut_starts) or cut_starts[k] > end:
                left_starts.append(start)
                left_ends.append(end)
                break
            if cut_starts[k] > start:
                left_starts.append(start)
                left_ends.append(cut_starts[k] - 1)
            start = max(start, cut_ends[k] + 1)
            k += 1
    return _cidr_strings(*_cidr_blocks(left_starts, left_ends, version), version)


def aggregate(networks: Iterable[IPNetwork], version: int) -> list[IPNetwork]:
    """The fewest CIDRs covering exactly the given networks of one IP version."""
    network_class = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    starts, prefixes = _aggregate_ranges(networks, version)
    return [network_class((a, p)) for a, p in zip(starts, prefixes, strict=True)]


def aggregate_cidrs(networks: Iterable[IPNetwork], version: int) -> list[str]:
    """`aggregate` as the CIDR strings an IP set takes, without building network objects."""
    return _cidr_strings(*_aggregate_ranges(networks, version), version)


# --- The registry -----------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One registry entry: a blocked network and why. Times are epoch seconds."""

    network: IPNetwork
    reason: str
    alarm: str
    source: BlockSource
    # Since when it offends (its first offence's earliest evidence, or the first manual
    # block) and its latest evidence: on-call reads the span of an attack from them.
    first_seen: int
    last_seen: int
    blocked_until: int
    offences: int = 1
    requests: int = 0
    event_id: str | None = None
    actor: str | None = None
    # Set when an operator unblocked it. The row stays, offences reset to 0, as the
    # marker that what was seen of the address up to then is cleared: the responder
    # does not block it again on that evidence (waf_responder/decide.py).
    released_at: int | None = None
    released_by: str | None = None
    # The partition key the row is stored under (None until read back). Rows written
    # before networks were canonical can differ from `ip`; they are deleted by this.
    key: str | None = field(default=None, compare=False)
    # The row's write id as read (None until read back, or on a row written before ids).
    write_id: str | None = field(default=None, compare=False)
    # The row's TTL as read: past it, the row is forgotten (no earlier offence, no
    # release), also while DynamoDB has not deleted it yet, which can take days.
    expires_at: int | None = field(default=None, compare=False)

    @property
    def ip(self) -> str:
        return str(self.network)

    @property
    def version(self) -> int:
        return self.network.version

    @property
    def released(self) -> bool:
        return self.released_at is not None

    def is_live(self, now: float) -> bool:
        return not self.released and self.blocked_until > now

    def forgotten(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "version": self.version,
            "reason": self.reason,
            "alarm": self.alarm,
            "source": self.source,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "blocked_until": self.blocked_until,
            "offences": self.offences,
            "requests": self.requests,
            "event_id": self.event_id,
            "actor": self.actor,
            "released_at": self.released_at,
            "released_by": self.released_by,
        }


def _to_item(block: Block, memory_seconds: int) -> dict[str, Any]:
    """The row for a block; its TTL is `memory_seconds` after the block ends (or after
    its release)."""
    ends = block.blocked_until if block.released_at is None else block.released_at
    item: dict[str, Any] = {
        # The stack's tables share one partition key name; `ip` is kept readable too.
        KEY_ATTRIBUTE: {"S": block.ip},
        "ip": {"S": block.ip},
        "version": {"N": str(block.version)},
        "reason": {"S": block.reason},
        "alarm": {"S": block.alarm},
        "source": {"S": block.source},
        "first_seen": {"N": str(block.first_seen)},
        "last_seen": {"N": str(block.last_seen)},
        "blocked_until": {"N": str(block.blocked_until)},
        "offences": {"N": str(block.offences)},
        "requests": {"N": str(block.requests)},
        # The TTL outlives the block so a returning offender counts as a repeat.
        names.TTL_ATTRIBUTE: {"N": str(ends + memory_seconds)},
        WRITE_ID_ATTRIBUTE: {"S": secrets.token_hex(8)},
    }
    if block.event_id:
        item["event_id"] = {"S": block.event_id}
    if block.actor:
        item["actor"] = {"S": block.actor}
    if block.released_at is not None:
        item["released_at"] = {"N": str(block.released_at)}
        if block.released_by:
            item["released_by"] = {"S": block.released_by}
    return item


def _from_item(item: dict[str, Any]) -> Block | None:
    try:
        released_at = item.get("released_at", {}).get("N")
        return Block(
            network=canonical_network(ipaddress.ip_network(item["ip"]["S"])),
            reason=item["reason"]["S"],
            alarm=item["alarm"]["S"],
            source="manual" if item["source"]["S"] == "manual" else "auto",
            first_seen=int(item["first_seen"]["N"]),
            last_seen=int(item["last_seen"]["N"]),
            blocked_until=int(item["blocked_until"]["N"]),
            offences=int(item["offences"]["N"]),
            requests=int(item.get("requests", {}).get("N", "0")),
            event_id=item.get("event_id", {}).get("S"),
            actor=item.get("actor", {}).get("S"),
            released_at=None if released_at is None else int(released_at),
            released_by=item.get("released_by", {}).get("S"),
            key=item.get(KEY_ATTRIBUTE, item["ip"])["S"],
            write_id=item.get(WRITE_ID_ATTRIBUTE, {}).get("S"),
            expires_at=int(item[names.TTL_ATTRIBUTE]["N"]) if names.TTL_ATTRIBUTE in item else None,
        )
    except (KeyError, ValueError):
        # A hand-edited or foreign item must not stop every sync; it is simply not a block.
        logger.warning("ignoring malformed block registry item", extra={"ip": item.get("ip")})
        return None


class BlockRegistry:
    """Data access for the block registry (partition key KEY_ATTRIBUTE, TTL `expires_at`)."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None):
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        return self._client or _dynamodb()

    def all(self) -> list[Block]:
        """Every entry, live or remembered; a consistent read so a sync sees the latest write."""
        blocks: list[Block] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        while True:
            page = self.client.scan(**kwargs)
            for item in page.get("Items", []):
                block = _from_item(item)
                if block is not None:
                    blocks.append(block)
            if "LastEvaluatedKey" not in page:
                return blocks
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def live(self, now: float) -> list[Block]:
        """Live blocks, one per network: where a row under an older spelling of a network
        shares it with the canonical row, the canonical row decides (a release written
        there is not undone by the older row a failed clean-up left behind)."""
        return [b for b in rows_by_ip(self.all()).values() if b.is_live(now)]

    def put_many(
        self, blocks: Sequence[Block], memory_seconds: int, *, delete_keys: Iterable[str] = ()
    ) -> None:
        """Write each block under its canonical key, and delete `delete_keys` (rows stored
        under an older spelling of a network written here) in the same batches.

        A failure after some rows were written raises RegistryWriteFailed naming them.
        """
        # One write per address (the last wins): BatchWriteItem refuses a batch that
        # names a key twice, and refuses all of it.
        latest = {b.ip: b for b in blocks}
        deletes = sorted(set(delete_keys) - set(latest))
        self._batch(
            [{"PutRequest": {"Item": _to_item(b, memory_seconds)}} for b in latest.values()]
            + [{"DeleteRequest": {"Key": {KEY_ATTRIBUTE: {"S": key}}}} for key in deletes]
        )

    def claim(
        self, blocks: Sequence[Block], read: Mapping[str, Block], memory_seconds: int
    ) -> list[str]:
        """Write each block only if its row is still as `read` (by network) found it:
        absent, or carrying the same write id. Returns the networks whose rows changed
        since (not written: read again and decide again); the others are written.

        One conditional PutItem per row (BatchWriteItem takes no condition, and a
        transaction would refuse all of its rows for one changed row), a few at a
        time: hundreds in a row would take seconds.
        """
        client = self.client  # made here, in the caller's budget, and shared by the workers

        def put(block: Block) -> str | None:
            item = _to_item(block, memory_seconds)
            self._writing(item[WRITE_ID_ATTRIBUTE]["S"])
            try:
                client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **_unchanged_since(read.get(block.ip), block.ip),
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                held = condition_item(exc).get(WRITE_ID_ATTRIBUTE, {}).get("S")
                if held == item[WRITE_ID_ATTRIBUTE]["S"]:
                    # botocore's retry of a put whose answer was lost met the row that
                    # put wrote: it is this claim's, not another writer's.
                    return None
                return block.ip
            return None

        unique = list({b.ip: b for b in blocks}.values())
        if len(unique) <= 1:
            return [ip for ip in map(put, unique) if ip]
        from concurrent.futures import ThreadPoolExecutor, wait

        with ThreadPoolExecutor(max_workers=min(CLAIM_WORKERS, len(unique))) as pool:
            futures = [pool.submit(put, b) for b in unique]
            try:
                answers = [f.result() for f in futures]
            except BaseException as exc:
                # One failure fails the claim: do not go on writing the rest, and say
                # which rows the puts already running or done did write.
                for f in futures:
                    f.cancel()
                wait(futures)
                written = frozenset(
                    b.ip
                    for b, f in zip(unique, futures, strict=True)
                    if not f.cancelled() and f.exception() is None and f.result() is None
                )
                if written and isinstance(exc, Exception):
                    raise RegistryWriteFailed(written, len(unique)) from exc
                raise
        return [ip for ip in answers if ip]

    def _writing(self, write_id: str) -> None:
        """A claim is about to put a row with this write id (kept by _RecordingRegistry)."""

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        written: set[str] = set()
        try:
            for offset in range(0, len(requests), _DYNAMODB_BATCH):
                pending: list[Any] = requests[offset : offset + _DYNAMODB_BATCH]
                attempt = 0
                while pending:
                    answer = self.client.batch_write_item(RequestItems={self.table_name: pending})
                    left: list[Any] = list(
                        answer.get("UnprocessedItems", {}).get(self.table_name, [])
                    )
                    refused = {_request_key(r) for r in left}
                    written.update(k for k in map(_request_key, pending) if k not in refused)
                    pending = left
                    if pending:
                        attempt += 1
                        if attempt >= MAX_SYNC_ATTEMPTS:
                            raise BlockError("the block registry kept refusing writes (throttled)")
                        _backoff(attempt)
        except Exception as exc:
            # Nothing written: the caller's error as it was. Part written: say which part,
            # so what took effect is still reported and audited.
            if written:
                raise RegistryWriteFailed(frozenset(written), len(requests)) from exc
            raise


class Claims(Protocol):
    """A decision over a registry read: the blocks it writes."""

    @property
    def to_block(self) -> Sequence[Block]: ...


ClaimsT = TypeVar("ClaimsT", bound=Claims)


def decide_and_claim(
    decide_on: Callable[[dict[str, Block]], ClaimsT],
    *,
    memory_seconds: int,
    reg: BlockRegistry | None = None,
) -> ClaimsT:
    """Decide on a registry read and claim the blocks decided; where a row changed
    since the read (another writer blocked or unblocked it), read and decide again.
    Rows this decision wrote on an earlier pass are read back as its own."""
    reg = reg or registry()
    for attempt in range(MAX_SYNC_ATTEMPTS):
        rows = rows_by_ip(reg.all())
        # Decided on what the registry remembers; written only over the rows as read,
        # forgotten ones included (they are still there until DynamoDB deletes them).
        decision = decide_on(remembered(rows, time.time()))
        conflicts = reg.claim(decision.to_block, rows, memory_seconds)
        if not conflicts:
            return decision
        logger.info(
            "block registry rows changed since read; deciding again",
            extra={"conflicts": conflicts[:20], "conflict_count": len(conflicts)},
        )
        _backoff(attempt)
    raise BlockError(
        f"the block registry changed under every one of {MAX_SYNC_ATTEMPTS} reads; the rows "
        "already claimed are this decision's, and repeating it decides on them again"
    )


def _unchanged_since(read: Block | None, key: str) -> dict[str, Any]:
    """The condition that the row under `key` is still what was read."""
    if read is None or read.key != key:
        # No row under this key was read (at most one under an older spelling).
        return {
            "ConditionExpression": "attribute_not_exists(#k)",
            "ExpressionAttributeNames": {"#k": KEY_ATTRIBUTE},
        }
    if read.write_id is None:
        # A row from before write ids: any write since has given it one.
        return {
            "ConditionExpression": "attribute_exists(#k) AND attribute_not_exists(#w)",
            "ExpressionAttributeNames": {"#k": KEY_ATTRIBUTE, "#w": WRITE_ID_ATTRIBUTE},
        }
    return {
        "ConditionExpression": "#w = :w",
        "ExpressionAttributeNames": {"#w": WRITE_ID_ATTRIBUTE},
        "ExpressionAttributeValues": {":w": {"S": read.write_id}},
    }


def _request_key(request: dict[str, Any]) -> str:
    if "PutRequest" in request:
        key: str = request["PutRequest"]["Item"][KEY_ATTRIBUTE]["S"]
    else:
        key = request["DeleteRequest"]["Key"][KEY_ATTRIBUTE]["S"]
    return key


def registry() -> BlockRegistry:
    return BlockRegistry(get_settings().block_registry_table)


# --- Protected addresses ----------------------------------------------------------


@dataclass(frozen=True)
class ProtectedNetworks:
    admin: tuple[IPNetwork, ...]
    never_block: tuple[IPNetwork, ...]

    def networks(self, version: int) -> list[IPNetwork]:
        """Both lists' networks of one IP version, in canonical form."""
        return [
            network
            for network in map(canonical_network, (*self.admin, *self.never_block))
            if network.version == version
        ]

    def why_protected(self, network: IPNetwork) -> str | None:
        """'admin allowlist' or 'never-block list' when the network touches either
        (both sides compared in canonical form: an IPv4-mapped spelling is its IPv4)."""
        network = canonical_network(network)
        for label, networks in (
            ("admin allowlist", self.admin),
            ("never-block list", self.never_block),
        ):
            for protected in map(canonical_network, networks):
                if network.version == protected.version and network.overlaps(protected):
                    return label
        return None

    def unprotected_part(self, network: IPNetwork) -> list[IPNetwork]:
        """The addresses of `network` neither list holds, as the fewest CIDRs: all of
        it when it touches neither list, nothing when it lies wholly inside them."""
        network = canonical_network(network)
        if not self.why_protected(network):
            return [network]
        cut = [str(protected) for protected in self.networks(network.version)]
        pieces = cidrs_outside([str(network)], cut, network.version)
        return [ipaddress.ip_network(piece) for piece in pieces]

    def exempt_inside(self, network: IPNetwork) -> list[IPNetwork]:
        """The protected networks that overlap `network`, sorted, each once: for a
        network that only touches the lists, the addresses of it never blocked."""
        network = canonical_network(network)
        return sorted(
            {
                protected
                for protected in self.networks(network.version)
                if protected.overlaps(network)
            },
            key=lambda protected: (int(protected.network_address), protected.prefixlen),
        )


# How many of a range's unprotected parts a refusal lists before it stops.
_PARTS_NAMED = 4


def _protected_refusal(protected: ProtectedNetworks, network: IPNetwork, why: str) -> str:
    """Why `network` is not blocked: on a list, or, for a range that only overlaps
    one, which entries it touches and the parts outside them that may be blocked."""
    parts = protected.unprotected_part(network)
    if not parts:
        return f"{address_text(network)} is on the {why}; it is never blocked"
    touched = ", ".join(str(entry) for entry in protected.exempt_inside(network))
    named = ", ".join(str(part) for part in parts[:_PARTS_NAMED])
    more = f" and {len(parts) - _PARTS_NAMED} more" if len(parts) > _PARTS_NAMED else ""
    return (
        f"{address_text(network)} overlaps the {why} ({touched}); a range touching a "
        f"protected address is never blocked: block the parts outside it ({named}{more})"
    )


@lru_cache(maxsize=4)
def _ssm_provider(region: str, endpoint_url: str | None, budget: Timeouts | None) -> Any:
    # Keyed by the request budget in force (None: the background one), which
    # aws_client reads while the provider's client is made.
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    ssm: SSMClient = aws_client("ssm")
    return SSMProvider(boto3_client=ssm)


def read_cidrs(
    parameter: str | None, fallback: tuple[IPNetwork, ...], *, fresh: bool = False
) -> tuple[IPNetwork, ...]:
    """The CIDRs in an SSM parameter (cached; `fresh`: read now, and cached anew), else
    `fallback`; on an API request (request_budget), read within the request's budget."""
    if not parameter:
        return fallback
    settings = get_settings()
    provider = _ssm_provider(settings.region, settings.aws_endpoint_url, _request_budget.get())
    try:
        raw = provider.get(parameter, max_age=PROTECTED_LIST_CACHE_SECONDS, force_fetch=fresh)
    except Exception as exc:
        raise ProtectedListUnavailable(
            f"cannot read the protected address list {parameter}: nothing is blocked until it can"
        ) from exc
    try:
        return parse_cidrs(str(raw))
    except ValueError as exc:
        # The entry is an operator's typo, not a secret: naming it is the fix.
        raise ProtectedListUnavailable(
            f"the protected address list {parameter} does not parse ({exc}): nothing is "
            "blocked until it does (comma-separated CIDRs without host bits)",
            parameter=parameter,
        ) from exc


def protected_networks(*, fresh: bool = False) -> ProtectedNetworks:
    """The admin allowlist and never-block list (SSM in AWS, the environment locally);
    `fresh`: as they are now, not as cached up to PROTECTED_LIST_CACHE_SECONDS ago."""
    settings = get_settings()
    return ProtectedNetworks(
        admin=read_cidrs(
            settings.admin_allowed_cidrs_parameter, settings.admin_allowed_cidrs, fresh=fresh
        ),
        never_block=read_cidrs(
            settings.never_block_cidrs_parameter, settings.never_block_cidrs, fresh=fresh
        ),
    )


# --- Planning and syncing the IP sets ---------------------------------------------


def _priority(block: Block) -> tuple[int, int, int]:
    # An operator's block first, then the most recent, then the most active offender.
    return (0 if block.source == "manual" else 1, -block.last_seen, -block.requests)


@dataclass(frozen=True)
class IpSetPlan:
    """What one IP set should hold, and which live blocks did not fit."""

    version: int
    addresses: list[str]
    kept: list[Block]
    left_out: list[Block]


def enforceable_blocks(
    live: Sequence[Block], protected: ProtectedNetworks
) -> tuple[list[Block], list[Block]]:
    """The live blocks as the IP sets may hold them, and those they may not hold at all.

    A block touching the admin allowlist or the never-block list loses those addresses
    and keeps the rest of its network, as the fewest CIDRs: one partner's address put
    on the never-block list must not let a whole blocked range through. A block that
    lies wholly inside them is left out. Returns (the blocks to plan, some of them
    pieces of one block, each with that block's fields; the blocks left out)."""
    to_plan: list[Block] = []
    shielded: list[Block] = []
    for block in live:
        if not protected.why_protected(block.network):
            to_plan.append(block)
            continue
        pieces = protected.unprotected_part(block.network)
        if not pieces:
            shielded.append(block)
        to_plan.extend(replace(block, network=piece) for piece in pieces)
    return to_plan, shielded


def plan_ip_set(blocks: Sequence[Block], version: int, limit: int) -> IpSetPlan:
    """Aggregate the live blocks of one version into at most `limit` CIDRs.

    Past the limit, keep the longest prefix of the priority order whose aggregate
    fits (longest_fitting_prefix). A later block wholly inside what that prefix
    covers (an offender inside an operator's blocked range) needs no entry and the
    WAF refuses it: it is kept too. Only the blocks the set does not cover are left
    out, so "left out" always means "not enforced".
    """
    ordered = sorted((b for b in blocks if b.version == version), key=_priority)
    networks = [b.network for b in ordered]
    if len(_aggregate_ranges(networks, version)[0]) <= limit:
        return IpSetPlan(version, aggregate_cidrs(networks, version), ordered, [])
    fitting = longest_fitting_prefix(networks, version, limit)
    starts, ends = _merged_ranges(networks[:fitting], version)
    kept, left_out = list(ordered[:fitting]), list[Block]()
    for block in ordered[fitting:]:
        (kept if _within(block.network, starts, ends) else left_out).append(block)
    return IpSetPlan(version, aggregate_cidrs(networks[:fitting], version), kept, left_out)


def _within(network: IPNetwork, starts: Sequence[int], ends: Sequence[int]) -> bool:
    """Whether merged, sorted ranges (_merged_ranges) hold every address of `network`."""
    # The one merged range that can hold the network's first address.
    at = bisect.bisect_right(starts, int(network.network_address)) - 1
    return at >= 0 and ends[at] >= int(network.broadcast_address)


def longest_fitting_prefix(networks: Sequence[IPNetwork], version: int, limit: int) -> int:
    """How many of `networks`, taken in order, at most `limit` CIDRs can cover.

    Not a binary search: a network can lower the count (it fills the gap between
    two blocks, which then merge), so fitting is not monotone in the prefix
    length. The fewest covering CIDRs are kept as they grow, one network at a
    time: a network inside a kept CIDR adds nothing; otherwise it replaces the
    kept CIDRs inside it and then merges with its buddy, the other half of their
    common supernet, for as long as that buddy is kept. O(n log n) for n networks.
    """
    width = HOST_PREFIX[version]
    prefix_at: dict[int, int] = {}  # start -> prefix length of each kept, disjoint CIDR
    starts: list[int] = []  # the same starts, sorted
    longest = 0
    for taken, network in enumerate(networks, start=1):
        start, prefix = int(network.network_address), network.prefixlen
        covered = any(
            prefix_at.get(start >> (width - p) << (width - p)) == p for p in range(prefix + 1)
        )
        if not covered:
            end = start + (1 << (width - prefix)) - 1
            inside = starts[bisect.bisect_left(starts, start) : bisect.bisect_right(starts, end)]
            for old in inside:
                del prefix_at[old]
                starts.pop(bisect.bisect_left(starts, old))
            while prefix > 0:
                buddy = start ^ (1 << (width - prefix))
                if prefix_at.get(buddy) != prefix:
                    break
                del prefix_at[buddy]
                starts.pop(bisect.bisect_left(starts, buddy))
                start, prefix = min(start, buddy), prefix - 1
            prefix_at[start] = prefix
            bisect.insort(starts, start)
        if len(prefix_at) <= limit:
            longest = taken
    return longest


@dataclass
class SyncReport:
    """What a sync changed: per version, entries now in the set, added and removed."""

    entries: dict[int, int] = field(default_factory=dict)
    added: dict[int, list[str]] = field(default_factory=dict)
    removed: dict[int, list[str]] = field(default_factory=dict)
    left_out: list[Block] = field(default_factory=list)
    # Live blocks kept out of the sets because they lie wholly on a protected list now
    # (the list changed after they were made).
    protected: list[Block] = field(default_factory=list)
    lock_retries: int = 0
    # The registry's live blocks as the sync last read them (before protected
    # addresses were cut out): the sweep's caller reads them instead of reading again.
    live: list[Block] = field(default_factory=list)

    @property
    def removed_count(self) -> int:
        return sum(len(v) for v in self.removed.values())


@dataclass(frozen=True)
class _IpSetRef:
    version: int
    name: str
    id: str


@lru_cache(maxsize=8)
def _lookup_ip_set_id(name: str, scope: str, region: str, endpoint_url: str | None) -> str:
    client: WAFV2Client = aws_client("wafv2")
    kwargs: dict[str, Any] = {"Scope": scope, "Limit": 100}
    while True:
        page = client.list_ip_sets(**kwargs)
        for summary in page.get("IPSets", []):
            if summary["Name"] == name:
                return summary["Id"]
        marker = page.get("NextMarker")
        if not marker or not page.get("IPSets"):
            raise IpSetSyncFailed(f"WAF IP set {name} ({scope}) does not exist")
        kwargs["NextMarker"] = marker


def _ip_set_refs() -> list[_IpSetRef]:
    s = get_settings()
    refs = []
    for version, name, set_id in (
        (4, s.auto_block_ipset_v4_name, s.auto_block_ipset_v4_id),
        (6, s.auto_block_ipset_v6_name, s.auto_block_ipset_v6_id),
    ):
        if set_id is None:
            set_id = _lookup_ip_set_id(name, s.waf_scope, s.region, s.aws_endpoint_url)
        refs.append(_IpSetRef(version, name, set_id))
    return refs


@dataclass(frozen=True)
class _IpSetState:
    lock_token: str
    addresses: list[str]
    description: str


def _read_ip_sets(refs: Sequence[_IpSetRef]) -> dict[int, _IpSetState]:
    """Both auto-block IP sets as WAF holds them now, by IP version."""
    scope = get_settings().waf_scope
    found = {}
    for ref in refs:
        answer = _wafv2().get_ip_set(Name=ref.name, Scope=scope, Id=ref.id)
        found[ref.version] = _IpSetState(
            answer["LockToken"],
            list(answer["IPSet"].get("Addresses", [])),
            answer["IPSet"].get("Description") or "",
        )
    return found


def enforcement(found: Sequence[Block]) -> dict[str, str]:
    """How much of each block's network the auto-block IP sets hold now: "all",
    "part" (protected addresses cut out of it) or "none" (left out: protected, past
    the IP set limit, or not synced yet). Reads both IP sets; the registry alone
    cannot say what the WAF refuses."""
    # Each set's address ranges, merged and sorted once: a lookup per block after that.
    held = {
        version: _merged_ranges(
            (ipaddress.ip_network(a, strict=False) for a in ip_set.addresses), version
        )
        for version, ip_set in _read_ip_sets(_ip_set_refs()).items()
    }
    state: dict[str, str] = {}
    for block in found:
        starts, ends = held.get(block.version, ([], []))
        first = int(block.network.network_address)
        last = int(block.network.broadcast_address)
        # Otherwise the last range that starts within the block, or before it, decides
        # whether any part is held (ranges are disjoint and sorted, their ends too).
        last_start = bisect.bisect_right(starts, last) - 1
        if _within(block.network, starts, ends):
            state[block.ip] = "all"
        elif last_start >= 0 and ends[last_start] >= first:
            state[block.ip] = "part"
        else:
            state[block.ip] = "none"
    return state


# Its own generator, seeded from the OS: the jitter neither draws from nor disturbs
# the process-wide one, which a caller (or a property test replaying a case) may seed.
_jitter = random.Random()  # noqa: S311  # nosec B311 - jitter, not a secret


def _backoff_ceiling(attempt: int) -> float:
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0**attempt)


def _backoff(attempt: int) -> None:
    # Full jitter, so two responders that collided do not collide again in step.
    time.sleep(_jitter.uniform(0, _backoff_ceiling(attempt)))


def _time_for_attempt(deadline: float | None, wait: float, longest_attempt: float) -> bool:
    """Whether a sync attempt after `wait` seconds would still end before `deadline`.

    An attempt is assumed to take as long as the longest one so far, and at least
    one call's connect and read timeouts: that much is kept in hand."""
    if deadline is None:
        return True
    budget = _request_budget.get() or BACKGROUND
    allowance = max(longest_attempt, budget.connect_seconds + budget.read_seconds)
    return _monotonic() + wait + allowance <= deadline


def _put_ip_set(ref: _IpSetRef, addresses: list[str], lock_token: str, description: str) -> None:
    """The one UpdateIPSet call: the whole list, guarded by the token read before the plan."""
    # UpdateIPSet replaces the description too, and refuses an empty one: pass it back as read.
    extra = {"Description": description} if description else {}
    _wafv2().update_ip_set(
        Name=ref.name,
        Scope=get_settings().waf_scope,
        Id=ref.id,
        Addresses=addresses,
        LockToken=lock_token,
        **extra,
    )


def sync_ip_sets(
    now: float | None = None, reg: BlockRegistry | None = None, *, changed: Iterable[int] = ()
) -> SyncReport:
    """Make both auto-block IP sets equal the registry's live entries.

    Each attempt reads both lock tokens, then the registry, then writes whichever
    set differs. A lock conflict or throttling means another writer got there
    first: back off with jitter and start over from fresh reads. Every write is
    a whole list computed from one registry read, so no partial list is ever set.

    `changed`: the IP versions whose registry rows the caller has just written. Their
    sets are written even when they already match: that moves the lock token, so a
    sync that read the registry before the change (the sweep, planning to remove an
    expired address that was just blocked again) is refused and reads again.

    The addresses of the admin allowlist and the never-block list are left out of
    every live block (`enforceable_blocks`): they are never blocked, also when a list
    gained them after the block was made, and the rest of a block's network stays
    blocked. If the lists cannot be read, every live block is kept: an unreadable
    list must not unblock anyone.
    """
    reg = reg or registry()
    settings = get_settings()
    report = SyncReport()
    refs = _ip_set_refs()
    try:
        # Read now, not from the cache: an address on-call just added to the never-block
        # list leaves the IP sets at the next sync (the sweep's, every 5 minutes).
        protected: ProtectedNetworks | None = protected_networks(fresh=True)
    except ProtectedListUnavailable:
        logger.warning("protected lists unreadable: every live block stays in the IP sets")
        protected = None
    touched = set(changed)
    deadline = _request_deadline.get()
    longest_attempt = 0.0
    wait = 0.0
    for attempt in range(MAX_SYNC_ATTEMPTS):
        if not _time_for_attempt(deadline, wait, longest_attempt):
            refused = f" ({report.lock_retries} refused as conflicting or throttled)"
            raise IpSetSyncFailed(
                "the auto-block IP sets could not be updated in the time this request has"
                + (refused if report.lock_retries else "")
                + "; the registry holds the change and the sweep applies it within "
                f"{SWEEP_PERIOD_MINUTES} minutes"
            )
        if attempt:
            _backoff(attempt - 1)
        when = time.time() if now is None else now
        started = _monotonic()
        try:
            current = _read_ip_sets(refs)
            live = report.live = reg.live(when)
            if protected is not None:
                live, report.protected = enforceable_blocks(live, protected)
            report.left_out = []
            for ref in refs:
                ip_set = current[ref.version]
                plan = plan_ip_set(live, ref.version, settings.ipset_max_addresses)
                report.left_out.extend(plan.left_out)
                report.entries[ref.version] = len(plan.addresses)
                wanted, have = set(plan.addresses), set(ip_set.addresses)
                if wanted == have and ref.version not in touched:
                    continue
                _put_ip_set(ref, sorted(wanted), ip_set.lock_token, ip_set.description)
                if wanted != have:
                    added = cidrs_outside(wanted, have, ref.version)
                    removed = cidrs_outside(have, wanted, ref.version)
                    report.added.setdefault(ref.version, []).extend(added)
                    report.removed.setdefault(ref.version, []).extend(removed)
            return report
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in _RETRYABLE_WAF_ERRORS:
                raise
            report.lock_retries += 1
            logger.info("IP set changed under us; re-reading", extra={"code": code})
            longest_attempt = max(longest_attempt, _monotonic() - started)
            wait = _backoff_ceiling(attempt)
    raise IpSetSyncFailed(
        f"could not update the auto-block IP sets after {MAX_SYNC_ATTEMPTS} attempts; "
        "the registry holds the blocks and the next sync will apply them"
    )


# --- Operations -------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeResult:
    """The answer of a block or unblock: what changed and what the sync did."""

    changed: list[Block]
    not_found: list[str]
    sync: SyncReport
    # A target (or an unblocked network) that lies inside live blocked networks: the
    # WAF still refuses it, and only unblocking one of those lets it through
    # (network -> covering networks, widest first).
    covered_by: dict[str, list[str]] = field(default_factory=dict)
    # For an unblock: a target (or an unblocked network) that holds narrower live
    # blocks, which stay: the WAF still refuses those addresses inside it
    # (network -> the narrower blocked networks).
    blocked_inside: dict[str, list[str]] = field(default_factory=dict)
    # The registry holds the change (it is made, and audited) but the IP sets could not
    # be synced now: the next sync applies it, the sweep within SWEEP_PERIOD_MINUTES.
    # `sync_error` says why, for an operator (the API logs it and does not show it).
    sync_error: str | None = None
    # For a block: the live blocks it replaced (network -> the row as it was), so an
    # operator sees an expiry moved, earlier included, or another reason overwritten.
    replaced: dict[str, Block] = field(default_factory=dict)
    # For an unblock: released networks whose block had already expired. Not blocked
    # before the call either; the release still resets their offences and keeps the
    # evidence seen so far from blocking them again.
    expired: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.sync_error is not None


def _audit(action: str, actor: str, block: Block) -> None:
    # One structured line per change, so "who unblocked this and when" is a log query.
    logger.info(
        f"audit: {action} {block.ip}",
        extra={"audit": {"action": action, "by": actor, "ip": block.ip, "block": block.to_json()}},
    )


class _RecordingRegistry(BlockRegistry):
    """The registry, remembering which rows its claims wrote over every pass."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        write_ids: set[str] | None = None,
    ):
        super().__init__(table_name, client)
        self.written: set[str] = set()
        # The write ids of every row this change put (or tried to): a row read back on
        # a later pass that carries one of them is this change's own.
        self.write_ids: set[str] = set() if write_ids is None else write_ids
        # The write ids of a claim that raised: a put whose answer was lost (botocore's
        # retries included) may have landed all the same, which only a read can tell.
        self.unsettled: set[str] = set()

    def _writing(self, write_id: str) -> None:
        self.write_ids.add(write_id)

    def claim(
        self, blocks: Sequence[Block], read: Mapping[str, Block], memory_seconds: int
    ) -> list[str]:
        tried_before = set(self.write_ids)
        try:
            conflicts = super().claim(blocks, read, memory_seconds)
        except Exception as exc:
            if isinstance(exc, RegistryWriteFailed):
                self.written |= exc.written_keys
            self.unsettled = self.write_ids - tried_before
            raise
        self.written |= {b.ip for b in blocks} - set(conflicts)
        return conflicts

    def own_rows(self) -> set[str]:
        """The networks whose rows, read now, carry one of this change's write ids."""
        return {ip for ip, b in rows_by_ip(self.all()).items() if b.write_id in self.write_ids}


@dataclass(frozen=True)
class _OperatorChange:
    """An operator's block or unblock, decided on one registry read."""

    to_block: list[Block]
    # For an unblock: the rows it releases, as read (audited).
    found: list[Block] = field(default_factory=list)
    # The registry as this decision read it (one row per network).
    known: dict[str, Block] = field(default_factory=dict)


def _claim_operator_change(
    reg: BlockRegistry,
    action: str,
    actor: str,
    decide_on: Callable[[dict[str, Block]], _OperatorChange],
    *,
    audited: Callable[[_OperatorChange], Sequence[Block]],
    memory_seconds: int,
    write_ids: set[str] | None = None,
) -> _OperatorChange:
    """Write an operator's change with the responder's conditional claims, and audit
    what took effect.

    Each row is written only if it is still as the decision read it, so a responder
    or another operator writing it meanwhile is read and decided on again, never
    overwritten (an offence count, a longer block, a release). The registry is where a
    change takes effect, so what was written is audited before any sync: also when
    the sync then fails, and, for a write that fails partway, the part written.
    """
    decided: list[_OperatorChange] = []

    def decide_and_keep(known: dict[str, Block]) -> _OperatorChange:
        decided.append(decide_on(known))
        return decided[-1]

    recording = _RecordingRegistry(reg.table_name, reg._client, write_ids)
    try:
        change = decide_and_claim(decide_and_keep, memory_seconds=memory_seconds, reg=recording)
    except Exception as exc:  # noqa: BLE001 - re-raised unless every row of it landed
        change = _landed_anyway(recording, decided, exc, action, actor, audited)
    for b in audited(change):
        _audit(action, actor, b)
    # Rows of these networks under an older spelling: the claimed row replaces them.
    # Tidying only: the canonical row decides wherever both are read (rows_by_ip), so a
    # failure here leaves the change made, and is logged rather than reported failed.
    if change.to_block:
        try:
            stale = _stale_keys(reg.all(), {b.ip for b in change.to_block})
            if stale:
                reg.put_many([], memory_seconds, delete_keys=stale)
        except Exception:  # noqa: BLE001 - the change is made; the old rows are inert
            logger.warning(
                "rows under an older spelling not deleted; the canonical rows decide",
                exc_info=True,
            )
    return change


def _landed_anyway(
    recording: _RecordingRegistry,
    decided: Sequence[_OperatorChange],
    exc: Exception,
    action: str,
    actor: str,
    audited: Callable[[_OperatorChange], Sequence[Block]],
) -> _OperatorChange:
    """The decision whose claim raised `exc`, if every row of it is in the registry
    (its answers were lost, not its writes); otherwise raises what took effect.

    Rows written on any pass took effect, also when a later pass then failed; so did a
    put whose every answer was lost, if its row carries this change's write id. When
    the read that would tell fails, the outcome is unknown and said so, by address.
    """
    written = recording.written | getattr(exc, "written_keys", frozenset())
    if not decided:
        raise exc
    change = decided[-1]
    wanted = {b.ip for b in change.to_block}
    if recording.unsettled and not wanted <= written:
        try:
            written |= recording.own_rows() & wanted
        except Exception as read_failed:
            logger.warning("block registry not readable after lost write answers", exc_info=True)
            unknown = RegistryOutcomeUnknown(
                frozenset(written), sorted(wanted - written), len(wanted)
            )
            unknown.changed = [b for b in audited(change) if b.ip in written]
            for b in unknown.changed:
                _audit(action, actor, b)
            raise unknown from read_failed
    if recording.unsettled and wanted and wanted <= written:
        logger.warning(
            "block registry answers lost; every row of the change is its own, as read back",
            extra={"rows": sorted(wanted)[:20], "row_count": len(wanted)},
        )
        return change
    if not written:
        raise exc
    failed = RegistryWriteFailed(frozenset(written), len(wanted))
    failed.changed = [b for b in audited(change) if b.ip in written]
    for b in failed.changed:
        _audit(action, actor, b)
    raise failed from exc


def _sync_after_change(
    when: float, reg: BlockRegistry, changed: Iterable[Block]
) -> tuple[SyncReport, str | None]:
    """Sync after a registry change; a failure leaves the change pending, not undone."""
    try:
        return sync_ip_sets(now=when, reg=reg, changed={b.version for b in changed}), None
    except Exception as exc:  # noqa: BLE001 - the change is made: report it pending, not failed
        logger.exception("registry changed but the IP sets were not synced; the next sync will")
        if isinstance(exc, BlockError):
            return SyncReport(), str(exc)
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "unknown")
            return SyncReport(), f"WAF refused the IP set update ({code})"
        return SyncReport(), f"the IP set update failed ({type(exc).__name__})"


def rows_by_ip(rows: Iterable[Block]) -> dict[str, Block]:
    """One row per network; where an older spelling shares it, the canonical row wins."""
    return {b.ip: b for b in sorted(rows, key=lambda b: b.key == b.ip)}


def remembered(rows: Mapping[str, Block], now: float) -> dict[str, Block]:
    """The rows whose TTL has not passed."""
    return {ip: b for ip, b in rows.items() if not b.forgotten(now)}


def _stale_keys(rows: Iterable[Block], ips: set[str]) -> list[str]:
    """Keys of rows for these networks stored under an older spelling of them."""
    return [b.key for b in rows if b.ip in ips and b.key is not None and b.key != b.ip]


def list_blocks(now: float | None = None, *, include_expired: bool = False) -> list[Block]:
    """Live blocks (or all remembered ones, released too), soonest expiry first."""
    when = time.time() if now is None else now
    blocks = list(remembered(rows_by_ip(registry().all()), when).values())
    if not include_expired:
        blocks = [b for b in blocks if b.is_live(when)]
    return sorted(blocks, key=lambda b: (b.blocked_until, b.ip))


def block(
    targets: Sequence[str],
    *,
    reason: str,
    duration_seconds: int,
    actor: str,
    now: float | None = None,
) -> ChangeResult:
    """Block addresses by hand, for `duration_seconds`; refuses protected addresses.

    Blocking an address that is blocked now sets the new reason and expiry without
    counting another offence, so a repeated command (a retry) is not a repeat offender;
    the result's `replaced` holds the live blocks as they were.
    """
    if not targets:
        raise InvalidTarget("name at least one address to block")
    if duration_seconds <= 0:
        raise InvalidTarget("the block duration must be positive")
    reason = check_reason(reason)
    # Named twice ("203.0.113.7" and "203.0.113.7/32" too) is one block, one offence.
    networks = list(dict.fromkeys(parse_target(t) for t in targets))
    protected = protected_networks()
    for network in networks:
        why = protected.why_protected(network)
        if why:
            raise ProtectedAddress(_protected_refusal(protected, network, why))
    when = int(time.time() if now is None else now)
    reg = registry()
    own_writes: set[str] = set()
    # Per network, the newest row another writer left: what this block replaces. A later
    # pass of the claim reads this call's own write of an earlier pass back, which it
    # does not replace.
    before: dict[str, Block] = {}

    def decide_on(known: dict[str, Block]) -> _OperatorChange:
        decided = []
        for network in networks:
            previous = known.get(str(network))
            if previous is not None and previous.write_id in own_writes:
                previous = before.get(str(network))
            elif previous is not None:
                before[str(network)] = previous
            # A released row is no earlier offence: the operator cleared it.
            counted = previous if previous is not None and not previous.released else None
            if counted is None:
                offences = 1
            elif counted.is_live(when):
                offences = counted.offences
            else:
                offences = counted.offences + 1
            decided.append(
                Block(
                    network=network,
                    reason=reason,
                    alarm="manual",
                    source="manual",
                    first_seen=counted.first_seen if counted else when,
                    last_seen=when,
                    blocked_until=when + duration_seconds,
                    offences=offences,
                    requests=counted.requests if counted else 0,
                    actor=actor,
                )
            )
        return _OperatorChange(to_block=decided, known=known)

    change = _claim_operator_change(
        reg,
        "block",
        actor,
        decide_on,
        audited=lambda change: change.to_block,
        memory_seconds=get_settings().offence_memory_seconds,
        write_ids=own_writes,
    )
    blocks = change.to_block
    replaced = {
        b.ip: previous
        for b in blocks
        if (previous := before.get(b.ip)) is not None
        and not previous.released
        and previous.is_live(when)
    }
    report, sync_error = _sync_after_change(when, reg, blocks)
    return ChangeResult(
        changed=blocks, not_found=[], sync=report, sync_error=sync_error, replaced=replaced
    )


def release_memory_seconds() -> int:
    """How long a release marker is kept: past every window its evidence could be in."""
    return max(RELEASE_MEMORY_SECONDS, get_settings().offender_window_seconds)


def unblock(
    targets: Sequence[str] = (),
    *,
    actor: str,
    event_id: str | None = None,
    now: float | None = None,
) -> ChangeResult:
    """Remove blocks at once: by address, or every block one responder event made.

    The registry row is kept as released rather than deleted: offences reset to 0, so
    a customer unblocked by hand does not count as a repeat offender later, and the
    release time, so the responder's next look (the sweep's recheck of an alarm still
    in ALARM) does not block the address again on the evidence the operator cleared.
    The marker expires after release_memory_seconds(). `covered_by` names the wider
    live blocks that still cover a target or an unblocked network, `blocked_inside`
    the narrower ones that stay inside it.
    """
    if not targets and not event_id:
        raise InvalidTarget("name an address to unblock, or --event")
    networks = list(dict.fromkeys(parse_target(t) for t in targets))
    when = time.time() if now is None else now
    reg = registry()
    named = {str(n) for n in networks}
    released_at = int(when)
    own_writes: set[str] = set()

    def released_here(b: Block) -> bool:
        # Read back on a later pass of the claim: this call's own release (its write
        # id), not another's, even one by the same actor in the same second.
        return b.write_id is not None and b.write_id in own_writes

    def decide_on(known: dict[str, Block]) -> _OperatorChange:
        found = sorted(
            (
                b
                for b in known.values()
                if (not b.released or released_here(b))
                and (b.ip in named or (event_id is not None and b.event_id == event_id))
            ),
            key=lambda b: b.ip,
        )
        released = [
            replace(b, offences=0, released_at=released_at, released_by=actor, key=None)
            for b in found
        ]
        return _OperatorChange(to_block=released, found=found, known=known)

    change = _claim_operator_change(
        reg,
        "unblock",
        actor,
        decide_on,
        audited=lambda change: change.found,
        memory_seconds=release_memory_seconds(),
        write_ids=own_writes,
    )
    found = change.found
    lifted = {b.ip for b in found}
    not_found = [str(n) for n in networks if str(n) not in lifted]
    # What stays blocked after this call, so a network unblocked with it covers nothing.
    remaining = [b for b in change.known.values() if b.ip not in lifted and b.is_live(when)]
    checked = list(dict.fromkeys([*networks, *(b.network for b in found)]))
    covered_by = _covering_blocks(checked, remaining)
    blocked_inside = _blocks_inside(checked, remaining)
    if not found:
        # Nothing was released: the sync only repairs what an earlier failure left, as
        # the sweep does, so its failure must not turn "not blocked" into an error.
        try:
            report = sync_ip_sets(now=when, reg=reg)
        except Exception:  # noqa: BLE001 - the answer stands; the sweep repairs the sets
            logger.exception("IP sets not synced after an unblock that released nothing")
            report = SyncReport()
        return ChangeResult(
            changed=[],
            not_found=not_found,
            sync=report,
            covered_by=covered_by,
            blocked_inside=blocked_inside,
        )
    report, sync_error = _sync_after_change(when, reg, found)
    return ChangeResult(
        changed=found,
        not_found=not_found,
        sync=report,
        covered_by=covered_by,
        blocked_inside=blocked_inside,
        sync_error=sync_error,
        # By its end, not is_live: a later pass reads this call's own release back.
        expired=[b.ip for b in found if b.blocked_until <= when],
    )


def _covering_blocks(networks: Sequence[IPNetwork], live: Sequence[Block]) -> dict[str, list[str]]:
    """For each network, the live blocked networks that contain it (widest first)."""
    widest_first = sorted((b.network for b in live), key=lambda n: n.prefixlen)
    covered: dict[str, list[str]] = {}
    for network in networks:
        inside = [
            str(n)
            for n in widest_first
            if n.version == network.version
            and n.prefixlen < network.prefixlen
            and network.network_address in n
        ]
        if inside:
            covered[str(network)] = inside
    return covered


def _blocks_inside(networks: Sequence[IPNetwork], live: Sequence[Block]) -> dict[str, list[str]]:
    """For each network, the narrower live blocked networks inside it."""
    inside: dict[str, list[str]] = {}
    for network in networks:
        narrower = sorted(
            str(b.network)
            for b in live
            if b.version == network.version
            and b.network.prefixlen > network.prefixlen
            and b.network.subnet_of(network)  # type: ignore[arg-type]
        )
        if narrower:
            inside[str(network)] = narrower
    return inside


def clear_caches() -> None:
    """Forget cached clients, IP set ids and SSM values (a process that now points at
    another endpoint: the local stack restarting in-process, tests)."""
    clear_cached_clients()
    _lookup_ip_set_id.cache_clear()
    _ssm_provider.cache_clear()
