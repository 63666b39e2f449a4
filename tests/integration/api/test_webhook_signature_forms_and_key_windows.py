"""The signed recall feed's signature header and timestamp forms, and an API key's
rate-limit window at its edges, through the real handler against PostgreSQL and the
moto server."""

from __future__ import annotations

import base64
import time
import uuid

import pytest

from functions.shared.identity.webhooks import decode_secret, sign
from tests.integration.identity.conftest import IdentityWorld, world
from tests.integration.identity.test_webhooks import post
from tests.support.api import call_api
from tests.support.identity import identity_env, recall_event

__all__ = ["IdentityWorld", "identity_env", "world"]


def _headers(secret: str, body: bytes, signature, *, at: int | None = None) -> dict[str, str]:
    moment = int(time.time()) if at is None else at
    while True:
        msg_id = f"msg_{uuid.uuid4().hex}"
        good = sign(decode_secret(secret), msg_id, moment, body)
        # A MAC without "+" or "/" reads the same in the URL-safe alphabet: draw another.
        if "+" in good or "/" in good:
            break
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": signature(good),
        "Content-Type": "application/json",
    }


def _truncated(good: str) -> str:
    digest = base64.b64decode(good.partition(",")[2])
    return "v1," + base64.b64encode(digest[:16]).decode()


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        (lambda g: "v1,AAAA " + g, 200),  # a stale entry first, as in a sender's switch
        (lambda g: g + " v1,AAAA", 200),
        (lambda g: " " + g, 200),
        (lambda g: g.replace("v1,", "v1a,"), 401),  # right HMAC, wrong version
        (lambda g: g.replace("v1,", "v2,"), 401),
        (lambda g: g.replace("v1,", "V1,"), 401),
        (lambda g: g.rstrip("="), 401),  # padding dropped
        (lambda g: g.replace("+", "-").replace("/", "_"), 401),  # url-safe alphabet
        (_truncated, 401),  # a prefix of the right MAC
        (lambda g: " ".join(["v1,AAAA"] * 10 + [g]), 401),  # past MAX_SIGNATURES
        (lambda g: "v1,", 401),
    ],
    ids=[
        "bad-then-good",
        "good-then-bad",
        "leading-space",
        "v1a",
        "v2",
        "V1",
        "no-padding",
        "urlsafe",
        "truncated",
        "eleventh",
        "empty-v1",
    ],
)
def test_signature_header_forms(world, signature, status):
    body = recall_event(source_id=f"CPSC-{uuid.uuid4().hex[:8]}")
    assert post(body, _headers(world.webhook_secret, body, signature)).status == status
    assert world.recall_count() == (1 if status == 200 else 0)


@pytest.mark.parametrize(("offset", "status"), [(-310, 401), (-290, 200), (290, 200), (310, 401)])
def test_timestamp_tolerance_both_ways(world, offset, status):
    body = recall_event()
    headers = _headers(world.webhook_secret, body, lambda g: g, at=int(time.time()) + offset)
    assert post(body, headers).status == status


def test_rate_limit_window_rollover_and_retry_after_are_truthful(world, monkeypatch):
    """A limit of 2: the third request of a window is 429 with a Retry-After that
    lands in the next window, where the key is served again."""
    from functions.shared.identity import rate_limit

    now = [0.0]
    defaults = rate_limit.FixedWindowRateLimiter.__init__.__kwdefaults__
    monkeypatch.setitem(defaults, "clock", lambda: now[0])
    key = world.create_key(world.create_user("partner@example.com"), limit=2)
    base = 1_800_000_000  # a window boundary (divisible by 60)
    seen = []
    for offset in (59.2, 59.5, 59.7, 60.0, 60.1, 60.2):
        now[0] = base + offset
        answer = call_api("GET", "/recalls", headers={"X-API-Key": key})
        seen.append((answer.status, answer.header("Retry-After")))
    assert seen == [
        (200, None),
        (200, None),
        (429, "1"),
        (200, None),
        (200, None),
        (429, "60"),
    ]
