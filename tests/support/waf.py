"""The WAF responder's AWS resources on the moto server, and helpers to feed and inspect them.

Names come from functions/shared/names.py, as in the CDK stack; the tables are
created by `ops.waf.ensure_local_resources` with the stack's key schemas.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import boto3
import pytest

from functions.shared import names
from tests.support.aws import REGION

SCOPE = "REGIONAL"


@dataclass(frozen=True)
class WafResources:
    ipset_ids: dict[int, str]
    topic_arn: str
    queue_url: str


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def create_resources(monkeypatch: pytest.MonkeyPatch) -> WafResources:
    """Create every resource the responder touches and point its settings at them.

    The resources come from `ensure_local_resources` (what the local stack runs);
    this adds a log stream per group and an SQS queue subscribed to the on-call
    topic, so a test can read what on-call received.
    """
    from ops.waf import ensure_local_resources

    clear_caches()
    # The admin allowlist IP sets hold what the API's setting does, as CDK writes both.
    env = ensure_local_resources(os.environ.get("ADMIN_ALLOWED_CIDRS", ""))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    logs = _client("logs")
    for group in (names.WAF_LOG_GROUP, names.API_LOG_GROUP):
        logs.create_log_stream(logGroupName=group, logStreamName="main")
    sns, sqs = _client("sns"), _client("sqs")
    queue_url = sqs.create_queue(QueueName="oncall-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=env["ONCALL_TOPIC_ARN"], Protocol="sqs", Endpoint=queue_arn)
    clear_caches()
    return WafResources(
        ipset_ids={4: env["AUTO_BLOCK_IPSET_V4_ID"], 6: env["AUTO_BLOCK_IPSET_V6_ID"]},
        topic_arn=env["ONCALL_TOPIC_ARN"],
        queue_url=queue_url,
    )


def create_web_acl() -> str:
    """The stack's web ACL on moto, with no rules; returns its id."""
    acl = _client("wafv2").create_web_acl(
        Name=names.WEB_ACL,
        Scope="REGIONAL",
        DefaultAction={"Allow": {}},
        Rules=[],
        VisibilityConfig={
            "SampledRequestsEnabled": False,
            "CloudWatchMetricsEnabled": False,
            "MetricName": "acl",
        },
    )
    return str(acl["Summary"]["Id"])


def clear_caches() -> None:
    """Forget ids, cached SSM values and idempotency wiring from an earlier moto state."""
    from functions.shared import blocks, settings
    from functions.waf_responder import respond

    settings.get_settings.cache_clear()
    blocks.clear_caches()
    respond.clear_caches()


def waf_record(
    ip: str,
    *,
    action: str = "BLOCK",
    rule: str = "AWS-AWSManagedRulesCommonRuleSet",
    at_ms: int | None = None,
    country: str = "NL",
) -> dict[str, Any]:
    """One WAF log record, in the shape AWS WAF writes it."""
    return {
        "timestamp": at_ms if at_ms is not None else int(time.time() * 1000),
        "formatVersion": 1,
        "webaclId": "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/babyshield-web-acl/x",
        "terminatingRuleId": rule,
        "terminatingRuleType": "MANAGED_RULE_GROUP",
        "action": action,
        "httpSourceName": "APIGW",
        "httpRequest": {
            "clientIp": ip,
            "country": country,
            "headers": [{"name": "user-agent", "value": "curl/8"}],
            "uri": "/recalls",
            "args": "",
            "httpVersion": "HTTP/1.1",
            "httpMethod": "GET",
            "requestId": "r-1",
        },
    }


def put_log_lines(group: str, messages: list[str], at_ms: int | None = None) -> None:
    logs = _client("logs")
    stamp = at_ms if at_ms is not None else int(time.time() * 1000)
    for offset in range(0, len(messages), 5000):
        logs.put_log_events(
            logGroupName=group,
            logStreamName="main",
            logEvents=[
                {"timestamp": stamp, "message": m} for m in messages[offset : offset + 5000]
            ],
        )


def put_waf_records(counts: dict[str, int], **record: Any) -> None:
    """`counts[ip]` BLOCK records per address in the WAF log group."""
    messages = [json.dumps(waf_record(ip, **record)) for ip, n in counts.items() for _ in range(n)]
    put_log_lines(names.WAF_LOG_GROUP, messages)


def put_failed_sign_ins(counts: dict[str, int]) -> None:
    messages = [
        json.dumps(
            {
                "level": "INFO",
                "message": "sign-in failed",
                "auth_event": names.AUTH_EVENT_SIGN_IN_FAILED,
                "reason": names.SIGN_IN_WRONG_PASSWORD,
                "source_ip": ip,
            }
        )
        for ip, n in counts.items()
        for _ in range(n)
    ]
    put_log_lines(names.API_LOG_GROUP, messages)


def ip_set_addresses(resources: WafResources, version: int) -> list[str]:
    name = names.AUTO_BLOCK_IPSET_V4 if version == 4 else names.AUTO_BLOCK_IPSET_V6
    answer = _client("wafv2").get_ip_set(Name=name, Scope=SCOPE, Id=resources.ipset_ids[version])
    return sorted(answer["IPSet"]["Addresses"])


def set_ip_set(resources: WafResources, version: int, addresses: list[str]) -> None:
    """Write an IP set behind the responder's back (a stray entry, an operator's edit)."""
    name = names.AUTO_BLOCK_IPSET_V4 if version == 4 else names.AUTO_BLOCK_IPSET_V6
    wafv2 = _client("wafv2")
    current = wafv2.get_ip_set(Name=name, Scope=SCOPE, Id=resources.ipset_ids[version])
    wafv2.update_ip_set(
        Name=name,
        Scope=SCOPE,
        Id=resources.ipset_ids[version],
        Addresses=addresses,
        LockToken=current["LockToken"],
    )


def registry_ips() -> list[str]:
    pages = _client("dynamodb").get_paginator("scan").paginate(TableName=names.BLOCK_REGISTRY_TABLE)
    return sorted(item["ip"]["S"] for page in pages for item in page["Items"])


def idempotency_records() -> int:
    return len(_client("dynamodb").scan(TableName=names.IDEMPOTENCY_TABLE)["Items"])


def oncall_messages(resources: WafResources) -> list[dict[str, str]]:
    """Every SNS notification delivered so far: {"Subject", "Message"}."""
    sqs = _client("sqs")
    out: list[dict[str, str]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        batch = answer.get("Messages", [])
        if not batch:
            return out
        for message in batch:
            envelope = json.loads(message["Body"])
            out.append({"Subject": envelope.get("Subject", ""), "Message": envelope["Message"]})
            sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"])


def ip_set_updates_always_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every UpdateIPSet meets another writer's change (WAFOptimisticLockException), and
    retries do not wait: a registry change whose IP-set sync cannot land now."""
    from botocore.exceptions import ClientError

    from functions.shared import blocks

    def conflict(*args: object, **kwargs: object) -> None:
        raise ClientError(
            {"Error": {"Code": "WAFOptimisticLockException", "Message": "changed"}},
            "UpdateIPSet",
        )

    monkeypatch.setattr(blocks, "_put_ip_set", conflict)
    monkeypatch.setattr(blocks, "_backoff", lambda attempt: None)


def responders_block(
    ip: str, *, event_id: str = "evt-1", offences: int = 2, first_seen: int | None = None
) -> Any:
    """A live 4-hour block as the responder writes it for the WAF-blocked alarm."""
    import ipaddress

    from functions.shared import blocks

    now = int(time.time())
    return blocks.Block(
        ipaddress.ip_network(ip),
        f"{names.ALARM_WAF_BLOCKED}: WAF logs",
        names.ALARM_WAF_BLOCKED,
        "auto",
        now if first_seen is None else first_seen,
        now,
        now + 4 * 3600,
        offences=offences,
        requests=120,
        event_id=event_id,
    )


def raw_registry_item(
    key: str,
    *,
    version: int,
    reason: str,
    alarm: str,
    source: str,
    seen: int,
    blocked_until: int,
    offences: int,
    requests: int,
    expires_at: int,
    **attributes: dict[str, str],
) -> dict[str, Any]:
    """A block registry item written by hand, as DynamoDB holds it: rows the code no
    longer writes (another spelling, no write id, past its TTL)."""
    return {
        names.TABLE_PARTITION_KEY: {"S": key},
        "ip": {"S": key},
        "version": {"N": str(version)},
        "reason": {"S": reason},
        "alarm": {"S": alarm},
        "source": {"S": source},
        "first_seen": {"N": str(seen)},
        "last_seen": {"N": str(seen)},
        "blocked_until": {"N": str(blocked_until)},
        "offences": {"N": str(offences)},
        "requests": {"N": str(requests)},
        names.TTL_ATTRIBUTE: {"N": str(expires_at)},
        **attributes,
    }


def put_row_under_another_spelling(key: str = "::ffff:203.0.113.7/128") -> None:
    """A live registry row keyed as another Python spells 203.0.113.7 (an earlier
    responder on 3.13 wrote IPv4-mapped addresses so)."""
    now = int(time.time())
    _client("dynamodb").put_item(
        TableName=names.BLOCK_REGISTRY_TABLE,
        Item=raw_registry_item(
            key,
            version=6,
            reason="x",
            alarm="manual",
            source="manual",
            seen=now,
            blocked_until=now + 3600,
            offences=1,
            requests=0,
            expires_at=now + 7200,
        ),
    )


def hold_sweep_after_registry_read(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event]:
    """Hold the thread named "sweep" once, after its first registry read (before its IP
    set write). Returns (read, go): `read` is set when it is held, `go` lets it on."""
    from functions.shared import blocks

    read, go = threading.Event(), threading.Event()
    real_live = blocks.BlockRegistry.live

    def live(self: blocks.BlockRegistry, now: float) -> list[blocks.Block]:
        rows = real_live(self, now)
        if threading.current_thread().name == "sweep" and not read.is_set():
            read.set()
            assert go.wait(30)
        return rows

    monkeypatch.setattr(blocks.BlockRegistry, "live", live)
    return read, go


def alarm_in_state(name: str, state: Literal["ALARM", "OK"]) -> None:
    """The alarm `name` exists in CloudWatch (moto) and is in `state`, as the sweep's
    look again finds it with DescribeAlarms."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/WAFV2",
        MetricName="BlockedRequests",
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
