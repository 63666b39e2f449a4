"""The responder's flow: alarm -> offenders -> decision -> registry -> IP sets -> on-call.

`run` is the single call the handler makes. An alarm is handled at most once per
EventBridge event id (Powertools idempotency on DynamoDB): a redelivery returns
the first answer and blocks and notifies nothing new. If handling fails midway
the idempotency record is released and the whole flow runs again on retry,
which is safe because every step converges on the registry's content.

Responders for other events may run at the same time and find the same offender.
Each claims its blocks with conditional writes (blocks.decide_and_claim); one
refused because the row changed since its read (another responder blocked the
address, an operator unblocked it) reads the registry again and decides again, so
a block is made once, and named as blocked in one message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared import names
from functions.shared.blocks import (
    Block,
    ProtectedNetworks,
    aws_client,
    decide_and_claim,
    protected_networks,
    registry,
    remembered,
    rows_by_ip,
    sync_ip_sets,
)
from functions.shared.observability import logger, metrics
from functions.shared.settings import get_settings
from functions.waf_responder.decide import Decision, clearing_times, decide
from functions.waf_responder.events import Alarm, ParsedEvent, Rejected, Sweep
from functions.waf_responder.notify import compose, publish
from functions.waf_responder.offenders import OffenderReport, find_offenders
from functions.waf_responder.sweep import summarise, swept_sets

# EventBridge retries a failed delivery for up to 24 hours.
IDEMPOTENCY_SECONDS = 24 * 3600
# The answer is stored in the idempotency table, whose items stop at 400 KB:
# the lists are samples, the counts are complete.
SUMMARY_LISTED = 100


def _no_offender(report: OffenderReport) -> str:
    """Why a look found nobody, in on-call's words."""
    if not report.evidence:
        return "the rate rule limits no client now"
    return (
        f"no address reached {report.threshold} {report.evidence} in the offender window "
        f"({report.records} log record(s) read)"
    )


def respond(alarm: Alarm, *, alarm_since: int | None = None) -> dict[str, Any]:
    """Block the offenders behind one alarm and tell on-call; returns the summary.

    `alarm_since`: when the alarm entered its current ALARM state. An alarm event
    says (its own time); a recheck passes what DescribeAlarms said, or None.
    """
    settings = get_settings()
    if alarm_since is None and not alarm.recheck:
        alarm_since = int(alarm.at.timestamp())
    now = int(time.time())
    # Read first: without the protected lists nothing may be blocked at all.
    protected = protected_networks()
    # The window ends just after the alarm fired; records later than that are not its cause.
    reg = registry()
    # Read before the records, so the evidence newer than an operator's release, or
    # than the end of a block that ran out, is counted apart while they are read
    # (decide weighs only that against them).
    rows = remembered(rows_by_ip(reg.all()), now)
    report = find_offenders(
        alarm.kind,
        window_end=int(alarm.at.timestamp()) + 1,
        period_seconds=alarm.period_seconds,
        cleared_at=clearing_times(rows.values(), now),
    )
    # After the look, which can take up to the query deadline: a block that ended
    # meanwhile is no longer live, and its offender is not called "already blocked"
    # (nor blocked again on the evidence that block served: decide.py).
    now = int(time.time())
    # The registry as the claim last read it: what the earlier attempt's blocks are now
    # (an operator may have released or replaced one during the look).
    latest: dict[str, Block] = rows

    def decide_on(known: dict[str, Block]) -> Decision:
        nonlocal latest
        latest = known
        return decide(
            report.offenders,
            alarm=alarm.name,
            reason=f"{alarm.name}: {report.source}",
            event_id=alarm.event_id,
            known=known,
            protected=protected,
            now=now,
            settings=settings,
            alarm_since=alarm_since,
            # The rate rule's keys say who is limited now, not when they were seen.
            timed_evidence=alarm.kind != "waf-rate",
            threshold=report.threshold,
        )

    decision = decide_and_claim(decide_on, memory_seconds=settings.offence_memory_seconds, reg=reg)
    decision.to_block.extend(
        _made_by_an_earlier_attempt(latest, alarm.event_id, decision, now, protected)
    )
    sync = sync_ip_sets(reg=reg, changed={b.version for b in decision.to_block})
    if alarm.recheck and not decision.to_block:
        logger.info(
            "alarm still in ALARM: no new offender",
            extra={"alarm": alarm.name, "skipped": len(decision.skipped)},
        )
        return {
            "status": "unchanged",
            "alarm": alarm.name,
            "event_id": alarm.event_id,
            "blocked_count": 0,
            "skipped_count": len(decision.skipped),
        }
    notification = compose(
        alarm=alarm.name,
        alarm_reason=alarm.reason,
        event_id=alarm.event_id,
        source=report.source,
        blocked=decision.to_block,
        exempt={
            b.ip: exempt
            for b in decision.to_block
            if (exempt := protected.exempt_inside(b.network))
        },
        skipped=decision.skipped,
        left_out=sync.left_out,
        limit=settings.ipset_max_addresses,
        truncated_query=report.truncated,
        no_offender=_no_offender(report),
    )
    message_id = publish(notification)
    metrics.add_metric(
        name=names.METRIC_WAF_IPS_BLOCKED, unit=MetricUnit.Count, value=len(decision.to_block)
    )
    metrics.add_metric(
        name=names.METRIC_WAF_LOCK_RETRIES, unit=MetricUnit.Count, value=sync.lock_retries
    )
    logger.info(
        "alarm handled",
        extra={
            "alarm": alarm.name,
            "offenders": len(report.offenders),
            "blocked": len(decision.to_block),
            "skipped": len(decision.skipped),
            "left_out": len(sync.left_out),
            "lock_retries": sync.lock_retries,
        },
    )
    return {
        "status": "handled",
        "alarm": alarm.name,
        "event_id": alarm.event_id,
        "blocked_count": len(decision.to_block),
        "blocked": [b.ip for b in decision.to_block[:SUMMARY_LISTED]],
        "skipped_count": len(decision.skipped),
        "skipped": [
            {"ip": s.ip, "requests": s.requests, "why": s.why}
            for s in decision.skipped[:SUMMARY_LISTED]
        ],
        "left_out_count": len(sync.left_out),
        "left_out": [b.ip for b in sync.left_out[:SUMMARY_LISTED]],
        "lock_retries": sync.lock_retries,
        "subject": notification.subject,
        "message": notification.text,
        "message_id": message_id,
    }


def _made_by_an_earlier_attempt(
    rows: dict[str, Block],
    event_id: str,
    decision: Decision,
    now: int,
    protected: ProtectedNetworks,
) -> list[Block]:
    """Live blocks this event made in an attempt that failed before on-call heard (the
    message is sent last), which this look did not find again: the auto-block rules
    now refuse those addresses' requests before the rate rule counts them, so its keys
    no longer list them. They are announced (and synced) as this look's own, unless
    this look skipped them or they lie wholly inside a protected list now (put on the
    never-block list since): the WAF holds nothing of those, and on-call must not read
    them as blocked. One that only touches a list is announced: the sync cuts just the
    protected addresses out of it and the WAF refuses the rest (the message names the
    exempt addresses)."""
    named = {b.ip for b in decision.to_block} | {s.ip for s in decision.skipped}
    return [
        b
        for b in rows.values()
        if b.event_id == event_id
        and b.ip not in named
        and not b.released
        and b.is_live(now)
        and protected.unprotected_part(b.network)
    ]


def _respond_once_impl(
    alarm: Alarm, *, event: dict[str, Any], alarm_since: int | None = None
) -> dict[str, Any]:
    # `event` is only the idempotency key's source (its `id`); the alarm is already parsed.
    return respond(alarm, alarm_since=alarm_since)


@lru_cache(maxsize=4)
def _idempotent(
    table: str, region: str, endpoint_url: str | None
) -> tuple[Callable[..., dict[str, Any]], IdempotencyConfig]:
    # Key `id` and TTL `expiration`: Powertools' defaults, as the stack creates the table.
    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=aws_client("dynamodb"))
    config = IdempotencyConfig(
        event_key_jmespath="id",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )
    wrapped = idempotent_function(
        data_keyword_argument="event", persistence_store=persistence, config=config
    )(_respond_once_impl)
    return wrapped, config


def respond_once(
    alarm: Alarm,
    event: dict[str, Any],
    context: LambdaContext | None,
    *,
    alarm_since: int | None = None,
) -> dict[str, Any]:
    s = get_settings()
    wrapped, config = _idempotent(s.idempotency_table, s.region, s.aws_endpoint_url)
    if context is not None:
        # Lets an in-progress record expire with the invocation, so a retry after a
        # timeout is not refused as "already in progress" for the whole hour.
        config.register_lambda_context(context)
    return wrapped(alarm, event=event, alarm_since=alarm_since)


def run(
    parsed: ParsedEvent, event: dict[str, Any], context: LambdaContext | None
) -> dict[str, Any]:
    """Act on one parsed invocation; rejected and non-ALARM events change nothing."""
    if isinstance(parsed, Rejected):
        logger.warning("rejected event: %s", parsed.reason)
        return {"status": "rejected", "reason": parsed.reason}
    try:
        if isinstance(parsed, Sweep):
            report = swept_sets()
            result = summarise(report)
            result["rechecked"] = recheck_alarms(parsed, context, live=report.live)
            failed = [r["alarm"] for r in result["rechecked"] if r.get("status") == "failed"]
            if failed:
                # Counted and logged by the look itself. The sweep is done; failing the
                # invocation has this event retried, whose look for each failed alarm
                # re-announces the blocks an earlier attempt made before it failed (its
                # message unsent), and after the retries the dead-letter alarm pages.
                raise RecheckFailed(f"the look again failed for {', '.join(failed)}")
            return result
        if parsed.state != "ALARM":
            logger.info(
                "alarm state change ignored",
                extra={"alarm": parsed.name, "state": parsed.state},
            )
            return {"status": "ignored", "alarm": parsed.name, "state": parsed.state}
        return respond_once(parsed, event, context)
    except RecheckFailed:
        raise
    except Exception:
        metrics.add_metric(name=names.METRIC_WAF_RESPONDER_ERRORS, unit=MetricUnit.Count, value=1)
        logger.exception("WAF responder failed; the invocation will be retried")
        raise


class RecheckFailed(Exception):
    """A sweep's look again at an alarm still in ALARM failed; the sweep itself is done."""


def recheck_alarms(
    swept: Sweep, context: LambdaContext | None, *, live: Sequence[Block] | None = None
) -> list[dict[str, Any]]:
    """Look again for the offenders of every alarm still in ALARM.

    EventBridge starts the responder when an alarm changes into ALARM, not while
    it stays there: an address that joins a long attack after that first look
    would go unblocked until the alarm clears and fires again. The sweep runs
    every five minutes, so it looks again; each look is handled once per sweep
    event, like an alarm event, and tells on-call only of new blocks. A failed
    look is logged and counted, does not undo the sweep nor stop the other looks,
    and then fails the invocation (run), to be retried with the same event.

    The look reads the same window as the look before it, so an address an operator
    unblocked in between is blocked again only on newer evidence (decide.py).

    A retried sweep event also looks again at an alarm that has left ALARM since, if
    an earlier attempt's look at it blocked addresses: that look failed before on-call
    heard (its message is sent last), and the block it made is usually what cleared
    the alarm. The look is handled once per sweep event as before, so one that did
    finish is not repeated. `live`: the registry's live blocks as the sweep's sync
    read them (read here when not given).
    """
    settings = get_settings()
    alarm_names = sorted(settings.waf_alarm_kinds)
    if not alarm_names:
        return []
    try:
        answer = aws_client("cloudwatch").describe_alarms(
            AlarmNames=alarm_names, AlarmTypes=["MetricAlarm"]
        )
    except Exception:  # noqa: BLE001 - the sweep is done; a failed look must not undo it
        metrics.add_metric(name=names.METRIC_WAF_RESPONDER_ERRORS, unit=MetricUnit.Count, value=1)
        logger.exception("alarm states unreadable; no recheck this sweep")
        return []
    try:
        earlier = _looked_at_by_this_event(swept, live)
    except Exception:  # noqa: BLE001 - the alarms in ALARM are still looked at
        metrics.add_metric(name=names.METRIC_WAF_RESPONDER_ERRORS, unit=MetricUnit.Count, value=1)
        logger.exception("block registry unreadable; only alarms in ALARM are looked at")
        earlier = set()
    results = []
    for found in answer.get("MetricAlarms", []):
        name = found["AlarmName"]
        kind = settings.waf_alarm_kinds.get(name)
        in_alarm = found.get("StateValue") == "ALARM"
        if kind is None or not (in_alarm or name in earlier):
            continue
        alarm = Alarm(
            event_id=f"{swept.event_id}:{name}",
            name=name,
            kind=kind,
            state="ALARM",
            reason="still in ALARM at the expiry sweep",
            at=swept.at,
            period_seconds=found.get("Period"),
            recheck=True,
        )
        # When the alarm entered ALARM (StateTransitionedTimestamp; StateUpdatedTimestamp
        # also moves while the state stays), so rate-rule keys count again after an
        # unblock once the alarm has cleared and fired since. Out of ALARM: unknown.
        entered = found.get("StateTransitionedTimestamp") if in_alarm else None
        try:
            results.append(
                respond_once(
                    alarm,
                    {"id": alarm.event_id},
                    context,
                    alarm_since=int(entered.timestamp()) if entered else None,
                )
            )
        except Exception:  # noqa: BLE001 - one alarm's failed look must not stop the others
            metrics.add_metric(
                name=names.METRIC_WAF_RESPONDER_ERRORS, unit=MetricUnit.Count, value=1
            )
            logger.exception("recheck of an alarm failed", extra={"alarm": name})
            results.append({"status": "failed", "alarm": name})
    return results


def _looked_at_by_this_event(swept: Sweep, live: Sequence[Block] | None) -> set[str]:
    """The alarms whose look under this sweep event blocked an address still live: a
    retried event's earlier attempt (each look's event id is `<sweep id>:<alarm>`)."""
    prefix = f"{swept.event_id}:"
    if live is None:
        live = registry().live(time.time())
    return {
        block.event_id.removeprefix(prefix)
        for block in live
        if block.event_id and block.event_id.startswith(prefix)
    }


def clear_caches() -> None:
    """Forget the idempotency wiring and the WAF lookups of an earlier endpoint."""
    from functions.waf_responder import offenders

    offenders._web_acl_id.cache_clear()
    offenders._rate_keys_client_for.cache_clear()
    _idempotent.cache_clear()
