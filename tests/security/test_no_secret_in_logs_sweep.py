"""The promise "never log a secret, a token, a password or an API key", swept end to end.

Real requests go through functions.api.handler.lambda_handler behind the local edge
(ops/local_edge.py: the WAF rules and WAF log records), against real PostgreSQL and
the moto server. Everything written is captured: the Powertools logger's JSON lines
and the EMF blobs (stdout), every Python log record at DEBUG, stderr, the audit_log
rows, the DynamoDB items the API writes (rate limits, lockouts, nonces), and the WAF
log records. Each secret is then looked for in every captured byte, as sent and in
its obvious encodings.

Third-party records below INFO are kept apart: in AWS the functions log at INFO
(cdk/functions.py: application_log_level_v2), so botocore's DEBUG dumps of Secrets
Manager answers never leave the process; they are not the project's promise.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.shared import names
from ops.apigw import LocalLambdaContext, response_headers, rest_event
from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld, world  # noqa: F401
from tests.support.api import ApiResponse
from tests.support.identity import (  # noqa: F401
    access_claims,
    forge_token,
    hs256_with_public_key,
    identity_env,
    jwt_secret_id,
    recall_event,
    unsigned_token,
)

EDGE_STREAM = "local-edge"
# Loggers whose every record, at any level, is the project's own output.
PROJECT_LOGGERS = ("babyshield", "functions", "ops")


# ---------------------------------------------------------------------------------------
# What counts as a secret, and its obvious encodings
# ---------------------------------------------------------------------------------------


def _b64_forms(data: bytes) -> set[str]:
    std = base64.b64encode(data).decode("ascii")
    url = base64.urlsafe_b64encode(data).decode("ascii")
    return {std, std.rstrip("="), url, url.rstrip("=")}


def encodings(value: str) -> set[str]:
    """The value and what a log line could turn it into: JSON-escaped, URL-encoded,
    base64 (standard and URL-safe, with and without padding), and the repr of its bytes."""
    raw = value.encode("utf-8", "surrogatepass")
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        repr(raw)[2:-1],
        raw.hex(),
    }
    forms |= _b64_forms(raw)
    # Base64 of a string shorter than 4 characters is noise; so is any form that short.
    return {form for form in forms if len(form) >= 12}


def fragments(value: str, size: int = 24) -> set[str]:
    """A long value logged in part still leaks: its head, middle and tail."""
    if len(value) <= size * 2:
        return set()
    middle = len(value) // 2
    return {value[:size], value[middle : middle + size], value[-size:]}


@dataclass
class Secret:
    label: str
    value: str
    # Forms of the value that may be stored (in a database table) but never logged.
    log_only: set[str] = field(default_factory=set)

    def forms(self) -> set[str]:
        found = set(encodings(self.value))
        for part in fragments(self.value):
            found |= encodings(part)
        return found


def api_key_secret(label: str, plaintext: str) -> list[Secret]:
    """An API key: the whole key, its secret part, and the SHA-256 of the secret part
    (stored, never logged; it is also the signing key of v2 admin signatures)."""
    secret_part = plaintext.split("_", 2)[2]
    digest = hashlib.sha256(secret_part.encode()).digest()
    hashes = {digest.hex(), *_b64_forms(digest)}
    return [
        Secret(label, plaintext, log_only=hashes),
        Secret(f"{label} (secret part)", secret_part, log_only=hashes),
    ]


def token_secret(label: str, token: str) -> list[Secret]:
    """A bearer token: the whole of it, and its signature segment on its own."""
    parts = token.split(".")
    found = [Secret(label, token)]
    if len(parts) == 3 and len(parts[2]) >= 16:
        found.append(Secret(f"{label} (signature)", parts[2]))
    return found


# ---------------------------------------------------------------------------------------
# Capturing everything written
# ---------------------------------------------------------------------------------------


class _AllRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write of a record: message, args, extras, traceback."""
    from functions.shared.observability import logger

    parts = [record.getMessage(), repr(record.args)]
    parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in ("args", "msg")]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    try:
        parts.append(logger.registered_formatter.format(record))
    except Exception as exc:  # noqa: BLE001 - a record the formatter cannot take is shown raw
        parts.append(f"<unformattable: {exc!r}>")
    return "\n".join(parts)


def _is_project(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] in PROJECT_LOGGERS


@dataclass
class Sweep:
    """Drives requests through the edge and the API, and gathers every written byte."""

    world: IdentityWorld | None
    edge: Any
    capfd: pytest.CaptureFixture[str]
    handler: _AllRecords
    powertools_lines: io.StringIO
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        query: str = "",
        body: bytes | str | None = None,
        json_body: Any = None,
        source_ip: str = "198.51.100.10",
    ) -> ApiResponse:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if json_body is not None:
            body = json.dumps(json_body)
            if not any(name.lower() == "content-type" for name, _ in pairs):
                pairs.append(("Content-Type", "application/json"))
        event = rest_event(method, path, headers=pairs, query=query, body=body, source_ip=source_ip)
        response = self.edge(event, LocalLambdaContext())
        return ApiResponse(
            status=int(response["statusCode"]),
            headers=response_headers(response),
            body=response.get("body") or "",
        )

    def _drain(self) -> None:
        captured = self.capfd.readouterr()
        self.out.append(captured.out)
        self.err.append(captured.err)

    def surfaces(self) -> dict[str, str]:
        """Surface name -> everything written there so far."""
        self._drain()
        stdout = "".join(self.out) + "\n" + self.powertools_lines.getvalue()
        emf = [line for line in stdout.splitlines() if '"_aws"' in line]
        lines = [line for line in stdout.splitlines() if '"_aws"' not in line]
        project = [r for r in self.handler.records if _is_project(r)]
        third_party = [
            r for r in self.handler.records if not _is_project(r) and r.levelno >= logging.INFO
        ]
        found = {
            "stdout (Powertools log lines)": "\n".join(lines),
            "stdout (EMF metrics)": "\n".join(emf),
            "stderr": "".join(self.err),
            "python logging (project, DEBUG+)": "\n".join(_record_text(r) for r in project),
            "python logging (third party, INFO+)": "\n".join(_record_text(r) for r in third_party),
        }
        if self.world is not None:
            rows = self.world.query("SELECT row_to_json(a)::text FROM audit_log a")
            found["audit_log rows"] = "\n".join(str(row[0]) for row in rows)
        if self.edge is not None:
            found["WAF log records"] = "\n".join(waf_log_messages())
        return found

    def stored(self) -> dict[str, str]:
        """What the API stores outside the logs: the DynamoDB items (rate limits,
        lockouts, webhook ids and admin nonces). A secret's hash may be stored; the
        secret itself may not."""
        if self.world is None:
            return {}
        dynamodb = boto3.client("dynamodb")
        found = {}
        for table in (names.RATE_LIMIT_TABLE, names.WEBHOOK_NONCE_TABLE):
            items = dynamodb.scan(TableName=table)["Items"]
            found[f"DynamoDB {table}"] = json.dumps(items)
        return found

    def leaks(self, secrets: Iterable[Secret]) -> list[str]:
        """Every (surface, secret, form) where a secret shows up."""
        secrets = list(secrets)
        logged = self.surfaces()
        stored = self.stored()
        found = []
        for secret in secrets:
            for surface, text in logged.items():
                for form in secret.forms() | secret.log_only:
                    if form in text:
                        found.append(f"{surface}: {secret.label} as {_shown(form)}")
                        break
            for surface, text in stored.items():
                for form in secret.forms():
                    if form in text:
                        found.append(f"{surface}: {secret.label} as {_shown(form)}")
                        break
        return found


def _shown(form: str) -> str:
    return repr(form if len(form) <= 40 else form[:37] + "...")


def waf_log_messages() -> list[str]:
    logs = boto3.client("logs")
    events = logs.get_log_events(logGroupName=names.WAF_LOG_GROUP, logStreamName=EDGE_STREAM)
    return [event["message"] for event in events["events"]]


@contextmanager
def capturing(identity: IdentityWorld | None, edge: Any, capfd: Any) -> Iterator[Sweep]:
    """Every log record at DEBUG, the Powertools logger's lines, stdout and stderr."""
    from functions.shared.observability import logger

    handler = _AllRecords()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Powertools' logger keeps its own level; the sweep wants every line it could write.
    previous_logger_level = logger.log_level
    logger.setLevel("DEBUG")
    # The Powertools handler holds the stdout of its creation (pytest's); what it writes
    # there is what Lambda would send to CloudWatch, so it is read from here instead.
    lines = io.StringIO()
    stream_handler = logger.registered_handler
    assert isinstance(stream_handler, logging.StreamHandler)
    previous_stream = stream_handler.setStream(lines)
    capfd.readouterr()
    try:
        yield Sweep(identity, edge, capfd, handler, lines)
    finally:
        stream_handler.setStream(previous_stream)
        logger.setLevel(previous_logger_level)
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.fixture
def sweep(world: IdentityWorld, capfd) -> Iterator[Sweep]:  # noqa: F811
    from functions.api.handler import lambda_handler
    from functions.shared.blocks import aws_client
    from ops.local_edge import EdgeIpSets, LocalEdge
    from ops.provision import ensure_log_stream
    from ops.waf import ensure_local_resources
    from tests.support.waf import clear_caches

    clear_caches()
    # The edge's admin allowlist holds what the API's does (the world's setting).
    environment = ensure_local_resources(os.environ["ADMIN_ALLOWED_CIDRS"])
    ensure_log_stream(boto3.client("logs"), names.WAF_LOG_GROUP, EDGE_STREAM)
    edge = LocalEdge(
        lambda_handler,
        rate_limit=100_000,
        ip_sets=EdgeIpSets.from_environment(environment),
        aws_client=aws_client,
        log_stream=EDGE_STREAM,
    )
    try:
        with capturing(world, edge, capfd) as swept:
            yield swept
    finally:
        clear_caches()


# AWS WAF logs the URI as sent and every header not on the redaction list
# (cdk/waf.py): a credential a client puts in the path, or in a header meant for
# something else, is in those records, and the local edge writes what WAF writes.
# Redacting the URI or every header would blind the log to what it is kept for.
WAF_LOG = "WAF log records"


def assert_no_leak(
    sweep: Sweep, secrets: Iterable[Secret], *, except_surfaces: tuple[str, ...] = ()
) -> None:
    found = [
        leak
        for leak in sweep.leaks(secrets)
        if not any(leak.startswith(f"{surface}:") for surface in except_surfaces)
    ]
    assert not found, "secrets written:\n  " + "\n  ".join(found)


def canary(kind: str) -> str:
    """A value no code could write by chance: its appearance anywhere is a leak."""
    return f"{kind}CANARY{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------------------
# The sweep itself sees a leak (else every clean result below would mean nothing)
# ---------------------------------------------------------------------------------------


def test_the_sweep_finds_a_planted_secret_on_every_surface_it_reads(sweep):
    from functions.shared.observability import logger

    planted = canary("Planted")
    logger.info("planted", extra={"value": base64.b64encode(planted.encode()).decode()})
    # A header WAF does not redact (the query string it does, since it may hold a key).
    sweep.call("GET", "/health", headers={"X-Planted": planted})
    found = "\n".join(sweep.leaks([Secret("planted", planted)]))
    assert "stdout (Powertools log lines)" in found
    assert "python logging (project, DEBUG+)" in found
    assert "WAF log records" in found


# ---------------------------------------------------------------------------------------
# Sign-in
# ---------------------------------------------------------------------------------------


def login(sweep: Sweep, email: str, password: Any, source_ip: str = "198.51.100.10") -> ApiResponse:
    return sweep.call(
        "POST",
        "/auth/login",
        json_body={"email": email, "password": password},
        source_ip=source_ip,
    )


WRONG_PASSWORDS = [
    "plain-",
    "' OR '1'='1' -- ",
    "<script>alert(1)</script>",
    "../../../etc/passwd#",
    "x" * 980,
    "pässwörd-ünïcødé-",
    'tab\tnewline\nquote"back\\slash-',
    "nul\x00after-",
]


def test_sign_in_right_and_wrong_passwords_are_never_written(sweep):
    right = canary("RightPw")
    secrets = [Secret("right password", right)]
    sweep.world.create_user("parent@example.com", right)
    answer = login(sweep, "parent@example.com", right)
    assert answer.status == 200
    secrets += token_secret("issued token", answer.json()["access_token"])
    statuses = []
    for index, shape in enumerate(WRONG_PASSWORDS):
        # Each on its own account and address: every one reaches the password check.
        email = f"user{index}@example.com"
        sweep.world.create_user(email, canary("Stored"))
        wrong = canary(f"Wrong{index}") + shape if len(shape) < 100 else shape + canary("Long")
        secrets.append(Secret(f"wrong password {shape[:12]!r}", wrong))
        statuses.append(login(sweep, email, wrong, source_ip=f"198.51.100.{20 + index}").status)
    # The right password of one account against an unknown one
    statuses.append(login(sweep, "nobody@example.com", right, source_ip="198.51.100.99").status)
    assert statuses == [401] * (len(WRONG_PASSWORDS) + 1)
    assert_no_leak(sweep, secrets)


def test_passwords_past_the_lockout_are_never_written(sweep):
    sweep.world.create_user("parent@example.com", canary("Stored"))
    secrets = []
    statuses = []
    for attempt in range(12):
        password = canary(f"Guess{attempt}")
        secrets.append(Secret(f"guess {attempt}", password))
        statuses.append(login(sweep, "parent@example.com", password).status)
    assert 429 in statuses
    assert_no_leak(sweep, secrets)


def test_a_too_long_password_is_never_written(sweep):
    sweep.world.create_user("parent@example.com", canary("Stored"))
    over_field = canary("Over1024") + "y" * 1100
    over_body = canary("OverBody") + "z" * 2_000_000
    statuses = [
        login(sweep, "parent@example.com", over_field).status,
        login(sweep, "parent@example.com", over_body).status,
    ]
    # The 2 MB body is over the WebACL's size limit: the edge refuses it (403) before
    # the API, as in AWS, and neither writes what it held.
    assert statuses == [422, 403]
    assert_no_leak(
        sweep, [Secret("1100-char password", over_field), Secret("2 MB password", over_body)]
    )


def test_a_password_that_is_not_utf8_is_never_written(sweep):
    sweep.world.create_user("parent@example.com", canary("Stored"))
    marker = canary("NonUtf8")
    raw_bytes = b'{"email":"parent@example.com","password":"' + marker.encode() + b'\xff\xfe"}'
    first = sweep.call(
        "POST", "/auth/login", headers={"Content-Type": "application/json"}, body=raw_bytes
    )
    # A JSON escape makes a lone surrogate: valid JSON, not encodable as UTF-8.
    escaped = '{"email":"parent@example.com","password":"' + marker + '\\ud800"}'
    second = sweep.call(
        "POST", "/auth/login", headers={"Content-Type": "application/json"}, body=escaped
    )
    assert_no_leak(sweep, [Secret("non-UTF-8 password", marker)])
    assert first.status == 400
    assert 400 <= second.status < 500, (second.status, second.body)


def test_a_password_in_a_refused_body_is_never_written(sweep):
    """422s on bodies that carry a password: an extra field, a wrong type, a bad email."""
    sweep.world.create_user("parent@example.com", canary("Stored"))
    secrets = []
    bodies = []
    for label in ("extra", "email", "nested", "list"):
        value = canary(f"Body{label}")
        secrets.append(Secret(f"password in a {label} 422", value))
        if label == "extra":
            bodies.append({"email": "parent@example.com", "password": value, "remember": True})
        elif label == "email":
            bodies.append({"email": "not-an-email", "password": value})
        elif label == "nested":
            bodies.append({"email": "parent@example.com", "password": {"value": value}})
        else:
            bodies.append({"email": "parent@example.com", "password": [value]})
    statuses = [sweep.call("POST", "/auth/login", json_body=b).status for b in bodies]
    assert statuses == [422] * len(bodies)
    assert_no_leak(sweep, secrets)


def test_sign_in_with_powertools_debug_on_writes_no_password(sweep):
    """POWERTOOLS_DEBUG=true is Powertools' documented switch for troubleshooting a
    function: its package logger then writes DEBUG lines to stdout, which Lambda sends
    to CloudWatch whatever the application log level. Turned on here as that variable
    does it at import (set_package_logger), for the length of the test."""
    from aws_lambda_powertools.logging.logger import set_package_logger

    password = canary("DebugPw")
    sweep.world.create_user("parent@example.com", password)
    package = logging.getLogger("aws_lambda_powertools")
    before = (package.level, package.propagate, list(package.handlers))
    debug_lines = io.StringIO()
    set_package_logger(stream=debug_lines)
    try:
        right = login(sweep, "parent@example.com", password).status
        wrong = login(sweep, "parent@example.com", password + "x").status
    finally:
        package.setLevel(before[0])
        package.propagate = before[1]
        package.handlers[:] = before[2]
    assert (right, wrong) == (200, 401)
    sweep.out.append(debug_lines.getvalue())  # what Lambda would get on stdout
    assert_no_leak(sweep, [Secret("password", password), Secret("wrong password", password + "x")])


# ---------------------------------------------------------------------------------------
# API keys
# ---------------------------------------------------------------------------------------


@pytest.fixture
def keys(sweep) -> dict[str, str]:
    identity = sweep.world
    owner = identity.create_user("partner@example.com")
    past = datetime.now(UTC) - timedelta(days=1)
    found = {
        "valid": identity.create_key(owner),
        "expired": identity.create_key(owner, expires_at=past),
        "revoked": identity.create_key(owner),
        "no scope": identity.create_key(owner, scopes=("admin",)),
    }
    revoked_id = found["revoked"].split("_")[1]
    identity.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (revoked_id,))
    valid = found["valid"]
    found["wrong secret"] = valid[:-6] + "AAAAAA"
    found["unknown id"] = "bs_" + "0" * 16 + "_" + valid.split("_", 2)[2]
    found["malformed"] = "bs_nothex_" + canary("Malformed")
    found["not a key"] = canary("NotAKey")
    found["with spaces"] = f"  {valid}\t"
    return found


def _key_secrets(keys: dict[str, str]) -> list[Secret]:
    secrets: list[Secret] = []
    for label, key in keys.items():
        key = key.strip()
        if key.count("_") >= 2 and key.startswith("bs_"):
            secrets += api_key_secret(f"API key ({label})", key)
        else:
            secrets.append(Secret(f"API key ({label})", key))
    return secrets


def test_api_keys_in_the_x_api_key_header_are_never_written(sweep, keys):
    statuses = {}
    for label, key in keys.items():
        for name in ("X-API-Key", "x-api-key", "X-API-KEY"):
            answer = sweep.call("GET", "/recalls", headers={name: key}, query="limit=1")
            statuses[(label, name)] = answer.status
        # The same header twice with two values
        sweep.call("GET", "/recalls", headers=[("X-API-Key", key), ("x-api-key", "other")])
        # A key on a route that needs a token, and on an unknown route
        sweep.call("GET", "/me/subscriptions", headers={"X-API-Key": key})
        sweep.call("GET", "/no-such-route", headers={"X-API-Key": key})
    assert statuses[("valid", "X-API-Key")] == 200
    assert statuses[("revoked", "X-API-Key")] == 401
    assert_no_leak(sweep, _key_secrets(keys))


def test_api_keys_in_the_query_string_are_never_written(sweep, keys):
    """A client that puts its key in the URL (as many APIs take it) gets refused or
    ignored; the key must still not be written anywhere."""
    for label in ("valid", "revoked", "malformed"):
        for name in ("api_key", "apiKey", "x-api-key", "key"):
            query = urllib.parse.urlencode({name: keys[label], "limit": "1"})
            sweep.call("GET", "/recalls", query=query)
    assert_no_leak(sweep, _key_secrets({k: keys[k] for k in ("valid", "revoked", "malformed")}))


def test_a_password_in_the_query_string_is_never_written(sweep):
    """A client that signs in with a form-style URL (`?email=..&password=..`) is
    refused; the password must still not be written anywhere."""
    password = canary("QueryPw")
    sweep.world.create_user("parent@example.com", password)
    query = urllib.parse.urlencode({"email": "parent@example.com", "password": password})
    assert sweep.call("POST", "/auth/login", query=query, json_body={}).status == 422
    sweep.call("GET", "/auth/login", query=query)
    assert_no_leak(sweep, [Secret("password in the query string", password)])


def test_events_not_in_the_rest_proxy_shape_write_no_credential(sweep, keys):
    """A direct invoke or a broken integration: refused as malformed, without its values."""
    from functions.api.handler import lambda_handler

    password = canary("MalformedEventPw")
    token = sweep.world.token(sweep.world.create_user("parent@example.com"))
    shapes = []
    for broken in ("headers", "body", "query"):
        event = rest_event(
            "POST",
            "/auth/login",
            headers={"X-API-Key": keys["valid"], "Authorization": f"Bearer {token}"},
            query=urllib.parse.urlencode({"api_key": keys["valid"]}),
            body=json.dumps({"email": "a@b.c", "password": password}),
        )
        if broken == "headers":
            event["headers"]["X-Broken"] = None
        elif broken == "body":
            event["body"] = {"email": "a@b.c", "password": password}
        else:
            event["queryStringParameters"]["n"] = 1
        shapes.append(lambda_handler(event, LocalLambdaContext())["statusCode"])
    assert shapes == [400, 400, 400]
    secrets = [*api_key_secret("key", keys["valid"]), *token_secret("token", token)]
    assert_no_leak(sweep, [*secrets, Secret("password", password)])


def test_api_keys_per_key_rate_limit_writes_no_key(sweep):
    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner, limit=2)
    statuses = [sweep.call("GET", "/recalls", headers={"X-API-Key": key}).status for _ in range(4)]
    assert 429 in statuses
    assert_no_leak(sweep, api_key_secret("rate-limited key", key))


# ---------------------------------------------------------------------------------------
# JWTs
# ---------------------------------------------------------------------------------------


def _tokens(identity: IdentityWorld) -> dict[str, str]:
    """A valid token and every kind of refused one (the JWT secret is made by `world`)."""
    user = identity.create_user("parent@example.com")
    subject = str(user)
    kid = boto3.client("secretsmanager").describe_secret(SecretId=jwt_secret_id())
    current = next(v for v, stages in kid["VersionIdsToStages"].items() if "AWSCURRENT" in stages)
    valid = identity.token(user)
    now = int(time.time())
    return {
        "valid": valid,
        "expired": forge_token(
            access_claims(subject, iat=now - 3600, nbf=now - 3600, exp=now - 1800), kid=current
        ),
        "hs256 with the public key": hs256_with_public_key(access_claims(subject), current),
        "alg none": unsigned_token(
            {"alg": "none", "typ": "at+jwt", "kid": current}, access_claims(subject, role="admin")
        ),
        "bad signature": valid[:-8]
        + ("AAAAAAAA" if not valid.endswith("AAAAAAAA") else "BBBBBBBB"),
        "unknown kid": forge_token(access_claims(subject), kid="0" * 32 + "-x"),
        "garbage": canary("Garbage") + "." + canary("Mid") + "." + canary("Sig"),
    }


def test_tokens_in_the_authorization_header_are_never_written(sweep):
    tokens = _tokens(sweep.world)
    statuses = {}
    for label, token in tokens.items():
        for name in ("Authorization", "authorization", "AUTHORIZATION"):
            for value in (f"Bearer {token}", f"bearer {token}", f"BEARER  {token} "):
                answer = sweep.call("GET", "/me/subscriptions", headers={name: value})
                statuses[(label, name, value.split()[0])] = answer.status
        # Malformed schemes and shapes
        for value in (
            f"Token {token}",
            f"Bearer {token} {token}",
            f"Bearer{token}",
            token,
            f"Basic {base64.b64encode(f'user:{token}'.encode()).decode()}",
        ):
            sweep.call("GET", "/me/subscriptions", headers={"Authorization": value})
        # Optional-auth route, unknown route, admin route from outside the allowlist
        sweep.call("GET", "/recalls", headers={"Authorization": f"Bearer {token}"})
        sweep.call("GET", "/nope", headers={"Authorization": f"Bearer {token}"})
        sweep.call("GET", "/admin/users", headers={"Authorization": f"Bearer {token}"})
        # Sent twice with different values
        sweep.call(
            "GET",
            "/me/subscriptions",
            headers=[("Authorization", f"Bearer {token}"), ("authorization", "Bearer x.y.z")],
        )
    assert statuses[("valid", "Authorization", "Bearer")] == 200
    assert statuses[("expired", "Authorization", "Bearer")] == 401
    secrets: list[Secret] = []
    for label, token in tokens.items():
        secrets += token_secret(f"token ({label})", token)
    assert_no_leak(sweep, secrets)


def test_tokens_in_the_query_string_are_never_written(sweep):
    """A client that sends its token as `?access_token=` (RFC 6750 section 2.3) is
    refused; the token must still not be written anywhere."""
    tokens = _tokens(sweep.world)
    for token in tokens.values():
        for name in ("access_token", "token", "jwt"):
            sweep.call("GET", "/me/subscriptions", query=urllib.parse.urlencode({name: token}))
    secrets: list[Secret] = []
    for label, token in tokens.items():
        secrets += token_secret(f"token ({label})", token)
    assert_no_leak(sweep, secrets)


# ---------------------------------------------------------------------------------------
# The admin chain: keys, tokens, signatures, nonces, created keys
# ---------------------------------------------------------------------------------------


@pytest.fixture
def admin(sweep) -> dict[str, Any]:
    identity = sweep.world
    admin_id = identity.create_user("root@example.com", role="admin")
    return {
        "id": admin_id,
        "key": identity.create_key(admin_id, scopes=("admin", "recalls:read")),
        "token": identity.token(admin_id, "admin"),
    }


def _admin_headers(admin: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"X-API-Key": admin["key"], "Authorization": f"Bearer {admin['token']}", **extra}


def test_admin_requests_and_the_keys_they_create_are_never_written(sweep, admin):
    user = sweep.world.create_user("parent@example.com")
    created = sweep.call(
        "POST",
        "/admin/api-keys",
        headers=_admin_headers(admin),
        json_body={"owner_id": str(user), "scopes": ["recalls:read"]},
        source_ip=ADMIN_IP,
    )
    assert created.status == 201, created.body
    new_key = created.json()["api_key"]
    rotated = sweep.call(
        "POST",
        f"/admin/api-keys/{created.json()['key_id']}/rotate",
        headers=_admin_headers(admin),
        json_body={"grace_days": 1},
        source_ip=ADMIN_IP,
    )
    assert rotated.status == 201, rotated.body
    successor = rotated.json()["new_key"]["api_key"]
    sweep.call("GET", "/admin/api-keys", headers=_admin_headers(admin), source_ip=ADMIN_IP)
    sweep.call("GET", "/admin/users", headers=_admin_headers(admin), source_ip=ADMIN_IP)
    # Every lock failing on its own, credentials still present
    sweep.call("GET", "/admin/users", headers=_admin_headers(admin), source_ip="203.0.113.50")
    sweep.call("GET", "/admin/users", headers={"X-API-Key": admin["key"]}, source_ip=ADMIN_IP)
    sweep.call(
        "GET",
        "/admin/users",
        headers={"X-API-Key": new_key, "Authorization": f"Bearer {admin['token']}"},
        source_ip=ADMIN_IP,
    )
    sweep.call("GET", "/admin/no-such-route", headers=_admin_headers(admin), source_ip=ADMIN_IP)
    # A 422 whose body carries a key
    refused = sweep.call(
        "POST",
        "/admin/api-keys",
        headers=_admin_headers(admin),
        json_body={"owner_id": str(user), "scopes": ["recalls:read"], "api_key": new_key},
        source_ip=ADMIN_IP,
    )
    assert refused.status == 422
    secrets = api_key_secret("admin key", admin["key"])
    secrets += token_secret("admin token", admin["token"])
    secrets += api_key_secret("created key", new_key)
    secrets += api_key_secret("rotated successor key", successor)
    assert_no_leak(sweep, secrets)


def test_signed_admin_requests_write_neither_key_nor_signing_key(sweep, admin, monkeypatch):
    from functions.api.middleware.admin_chain import sign_admin_request

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", "POST /admin/*")
    from functions.shared.settings import get_settings

    get_settings.cache_clear()
    user = sweep.world.create_user("parent@example.com")
    body = json.dumps({"owner_id": str(user), "scopes": ["recalls:read"]}).encode()
    signed = sign_admin_request(admin["key"], "POST", "/admin/api-keys", body)
    headers = {
        **signed,
        "Authorization": f"Bearer {admin['token']}",
        "Content-Type": "application/json",
    }
    first = sweep.call("POST", "/admin/api-keys", headers=headers, body=body, source_ip=ADMIN_IP)
    assert first.status == 201, first.body
    # Replayed nonce, tampered signature, stale timestamp, key sent whole on a signed route
    sweep.call("POST", "/admin/api-keys", headers=headers, body=body, source_ip=ADMIN_IP)
    tampered = {**headers, "X-Signature": "v2," + base64.b64encode(b"\0" * 32).decode()}
    tampered["X-Signature-Nonce"] = "n" * 24
    sweep.call("POST", "/admin/api-keys", headers=tampered, body=body, source_ip=ADMIN_IP)
    stale = sign_admin_request(admin["key"], "POST", "/admin/api-keys", body, timestamp=1000)
    sweep.call(
        "POST",
        "/admin/api-keys",
        headers={**headers, **stale},
        body=body,
        source_ip=ADMIN_IP,
    )
    sweep.call(
        "POST",
        "/admin/api-keys",
        headers={**_admin_headers(admin), "Content-Type": "application/json"},
        body=body,
        source_ip=ADMIN_IP,
    )
    secrets = api_key_secret("admin key", admin["key"])
    secrets += token_secret("admin token", admin["token"])
    secrets += api_key_secret("created key", first.json()["api_key"])
    assert_no_leak(sweep, secrets)


def test_an_admin_key_pasted_where_the_key_id_goes_is_never_written(sweep, admin):
    """On-call revoking a leaked key pastes the key it has, not its id: the API answers
    404, and the leaked key must not be copied into the logs on top of that."""
    owner = sweep.world.create_user("partner@example.com")
    leaked = sweep.world.create_key(owner)
    answer = sweep.call(
        "POST",
        f"/admin/api-keys/{leaked}/revoke",
        headers=_admin_headers(admin),
        source_ip=ADMIN_IP,
    )
    assert answer.status == 404
    # The same with a lock failing (an expired session): that refusal is an audit_log row.
    refused = sweep.call(
        "POST",
        f"/admin/api-keys/{leaked}/revoke",
        headers={"X-API-Key": admin["key"], "Authorization": "Bearer expired.session.token"},
        source_ip=ADMIN_IP,
    )
    assert refused.status == 401
    # And from an address off the admin allowlist: refused before any lock, and logged.
    outside = sweep.call("POST", f"/admin/api-keys/{leaked}/revoke", source_ip="198.51.100.99")
    assert outside.status == 403
    assert_no_leak(
        sweep, api_key_secret("leaked key in the path", leaked), except_surfaces=(WAF_LOG,)
    )


# ---------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------


def test_webhook_deliveries_never_write_the_webhook_secret(sweep):
    from functions.shared.identity.webhooks import decode_secret
    from ops.webhook import signed_request

    secret = sweep.world.webhook_secret
    body = recall_event()
    good = signed_request(secret, body)
    assert sweep.call("POST", "/webhooks/recalls", headers=good, body=body).status == 200
    sweep.call("POST", "/webhooks/recalls", headers=good, body=body)  # replay
    bad = {**good, "webhook-signature": "v1," + base64.b64encode(b"\1" * 32).decode()}
    bad["webhook-id"] = "msg_bad"
    sweep.call("POST", "/webhooks/recalls", headers=bad, body=body)
    # A valid signature on a body that fails validation
    broken = b'{"type":"recall.created","data":{"source_id":""}}'
    sweep.call("POST", "/webhooks/recalls", headers=signed_request(secret, broken), body=broken)
    key = decode_secret(secret)
    secrets = [
        Secret("webhook secret", secret, log_only={key.hex()}),
        Secret("webhook secret (base64 part)", secret.removeprefix("whsec_")),
    ]
    assert_no_leak(sweep, secrets)


def test_credentials_sent_in_the_wrong_header_are_never_written(sweep, admin):
    """The key where its id goes (X-API-Key-Id), the webhook secret where its signature
    goes: both are refused, and neither may be written in the clear."""
    secret = sweep.world.webhook_secret
    body = recall_event()
    for value in (secret, f"v1,{secret}"):
        headers = {
            "webhook-id": f"msg_{uuid.uuid4().hex}",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": value,
            "Content-Type": "application/json",
        }
        assert sweep.call("POST", "/webhooks/recalls", headers=headers, body=body).status == 401
    answer = sweep.call(
        "GET",
        "/admin/users",
        headers={"X-API-Key-Id": admin["key"], "Authorization": f"Bearer {admin['token']}"},
        source_ip=ADMIN_IP,
    )
    assert answer.status == 401
    secrets = [
        Secret("webhook secret", secret),
        Secret("webhook secret (base64 part)", secret.removeprefix("whsec_")),
        *api_key_secret("admin key", admin["key"]),
    ]
    assert_no_leak(sweep, secrets, except_surfaces=(WAF_LOG,))


# ---------------------------------------------------------------------------------------
# The 500 path and unknown routes
# ---------------------------------------------------------------------------------------


def test_an_unexpected_error_inside_a_route_writes_no_credential(sweep, monkeypatch):
    import functions.api.identity.store as store
    import functions.api.recalls.logic as logic

    password = canary("Pw500")
    sweep.world.create_user("parent@example.com", password)
    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner)
    token = sweep.world.token(owner)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("forced failure inside the route")

    monkeypatch.setattr(store, "user_for_login", broken)
    for name in dir(logic):
        if name.startswith(("search", "subscriptions_of", "list")) and callable(
            getattr(logic, name)
        ):
            monkeypatch.setattr(logic, name, broken)
    statuses = [
        login(sweep, "parent@example.com", password).status,
        sweep.call("GET", "/recalls", headers={"X-API-Key": key}).status,
        sweep.call("GET", "/me/subscriptions", headers={"Authorization": f"Bearer {token}"}).status,
    ]
    assert 500 in statuses, statuses
    secrets = [
        Secret("password", password),
        *api_key_secret("key", key),
        *token_secret("token", token),
    ]
    assert_no_leak(sweep, secrets)


def test_unknown_routes_write_no_credential(sweep, keys):
    token = sweep.world.token(sweep.world.create_user("parent@example.com"))
    password = canary("PwUnknown")
    headers = {"X-API-Key": keys["valid"], "Authorization": f"Bearer {token}"}
    for method, path in (
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("DELETE", "/auth/login"),
        ("GET", "/admin/nope"),
    ):
        sweep.call(
            method,
            path,
            headers=headers,
            json_body={"password": password} if method == "POST" else None,
        )
    assert_no_leak(
        sweep,
        [
            *api_key_secret("key", keys["valid"]),
            *token_secret("token", token),
            Secret("pw", password),
        ],
    )


# ---------------------------------------------------------------------------------------
# `babyshield` commands, with BABYSHIELD_DEBUG=1
# ---------------------------------------------------------------------------------------


@pytest.fixture
def debug_cli(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BABYSHIELD_DEBUG", "1")
    # No .babyshield/local.json of a running stack: the commands use what the test set.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def api_server(sweep) -> Iterator[str]:
    """The real API handler behind the local HTTP server (its access log on stderr)."""
    from tests.unit.ops.test_audit import serving

    with serving(sweep.edge, quiet=False) as url:
        yield url


def test_local_server_access_log_writes_no_credential_from_the_url(sweep, api_server):
    """`babyshield local` serves with its access log on (quiet=False): one line per
    request on stderr, as a developer's terminal or CI log keeps it."""
    import urllib.request

    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner)
    query = urllib.parse.urlencode({"api_key": key, "limit": "1"})
    with contextlib.suppress(Exception):
        urllib.request.urlopen(f"{api_server}/recalls?{query}", timeout=10).read()  # noqa: S310
    assert_no_leak(sweep, api_key_secret("key in the URL", key))


def test_audit_command_with_api_key_and_token_writes_neither(sweep, api_server, debug_cli):
    from ops.cli import main

    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner, limit=3)
    token = sweep.world.token(owner)
    main(["audit", "--url", api_server, "--api-key", key, "--token", token, "--no-aws"])
    main(["audit", "--url", api_server, "--api-key", key, "--token", token, "--no-aws", "--json"])
    assert_no_leak(sweep, [*api_key_secret("--api-key", key), *token_secret("--token", token)])


def test_audit_command_given_a_credential_with_a_trailing_newline_writes_neither(
    sweep, api_server, debug_cli, monkeypatch
):
    """A token or key read from a file keeps its newline (`--token "$(cat t)"` strips it,
    `--token "$TOKEN"` from `read -d ''` or an env file does not). The command must
    refuse it without printing it."""
    from ops.cli import main

    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner, limit=3)
    token = sweep.world.token(owner)
    monkeypatch.delenv("BABYSHIELD_DEBUG")
    codes = [
        main(["audit", "--url", api_server, "--no-aws", "--token", token + "\n"]),
        main(["audit", "--url", api_server, "--no-aws", "--api-key", key + "\n"]),
    ]
    assert codes == [2, 2]  # refused as arguments: nothing was sent
    assert_no_leak(sweep, [*api_key_secret("--api-key", key), *token_secret("--token", token)])


def test_audit_command_with_babyshield_debug_and_a_trailing_newline_writes_neither(
    sweep, api_server, debug_cli
):
    """The same with BABYSHIELD_DEBUG=1: main() re-raises, and the interpreter prints the
    traceback (written here as its excepthook would)."""
    import traceback

    from ops.cli import main

    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner, limit=3)
    token = sweep.world.token(owner)
    for args in (["--token", token + "\n"], ["--api-key", key + "\n"]):
        try:
            main(["audit", "--url", api_server, "--no-aws", *args])
        except Exception:  # noqa: BLE001 - what the interpreter would print
            sys.stderr.write(traceback.format_exc())
    assert_no_leak(sweep, [*api_key_secret("--api-key", key), *token_secret("--token", token)])


def test_webhook_send_writes_no_webhook_secret(sweep, api_server, debug_cli, monkeypatch):
    from ops.cli import main

    secret = sweep.world.webhook_secret
    url = f"{api_server}/webhooks/recalls"
    codes = [
        main(["webhook", "send", "--url", url, "--secret", secret, "--source-id", "CLI-1"]),
        main(["webhook", "send", "--url", url, "--source-id", "CLI-2"]),  # from Secrets Manager
    ]
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    codes.append(main(["webhook", "send", "--url", url, "--source-id", "CLI-3"]))
    # Replayed id, and an unreachable URL
    codes.append(
        main(["webhook", "send", "--url", url, "--message-id", "m-cli", "--source-id", "CLI-4"])
    )
    codes.append(
        main(["webhook", "send", "--url", url, "--message-id", "m-cli", "--source-id", "CLI-4"])
    )
    codes.append(main(["webhook", "send", "--url", "http://127.0.0.1:9/webhooks/recalls"]))
    # A secret that is not whsec_ base64
    bad = "whsec_" + canary("NotBase64") + "!"
    codes.append(main(["webhook", "send", "--url", url, "--secret", bad]))
    assert codes[:3] == [0, 0, 0], codes
    assert_no_leak(
        sweep,
        [
            Secret("webhook secret", secret),
            Secret("webhook secret (base64 part)", secret.removeprefix("whsec_")),
            Secret("bad --secret", bad),
        ],
    )


def test_demo_identity_setup_writes_no_generated_secret(sweep, debug_cli):
    from functions.shared.settings import get_settings
    from ops.demo_identity import (
        DEMO_ACCOUNTS,
        ensure_identity_secrets,
        ensure_identity_tables,
        seed_demo_identity,
    )
    from tests.support.identity import webhook_secret_id

    client = boto3.client("secretsmanager")
    for secret_id in (jwt_secret_id(), webhook_secret_id()):
        client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    get_settings.cache_clear()
    ensure_identity_secrets()
    ensure_identity_tables()
    seed_demo_identity(sweep.world.db.admin_conninfo)
    ensure_identity_secrets()  # idempotent second run
    jwt_value = json.loads(client.get_secret_value(SecretId=jwt_secret_id())["SecretString"])
    webhook = json.loads(client.get_secret_value(SecretId=webhook_secret_id())["SecretString"])
    private_lines = [
        line
        for line in jwt_value["private_key"].splitlines()
        if "-----" not in line and len(line) > 20
    ]
    secrets = [Secret(f"JWT private key line {i}", line) for i, line in enumerate(private_lines)]
    secrets.append(Secret("generated webhook secret", webhook["secret"]))
    for account in DEMO_ACCOUNTS:
        secrets.append(Secret(f"demo password of {account.role}", account.password))
        for demo_key in account.keys:
            secrets += api_key_secret(f"demo key {demo_key.key_id}", demo_key.api_key)
    assert_no_leak(sweep, secrets)


@pytest.fixture
def rotation_capture(aws, capfd, debug_cli, monkeypatch) -> Iterator[Sweep]:
    from tests.support.cli import set_local_cli_environment

    set_local_cli_environment(monkeypatch)
    with capturing(None, None, capfd) as swept:
        yield swept


def _pem_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if "-----" not in line and len(line) > 20]


def test_rotate_verbose_writes_neither_old_nor_new_secret_values(rotation_capture):
    from functions.shared.identity.jwt_keys import generate_jwt_secret_value
    from functions.shared.identity.webhooks import generate_webhook_secret_value
    from functions.shared.inventory import spec
    from functions.shared.rotation.driver import seed_secret
    from functions.shared.rotation.store import SecretStore
    from ops.cli import main

    store = SecretStore(caller="test")
    webhook_value = json.loads(generate_webhook_secret_value())
    webhook_value["kind"] = "generated"
    seed_secret(store, spec("webhook-signing-secret"), webhook_value)
    jwt_value = json.loads(generate_jwt_secret_value())
    seed_secret(store, spec("jwt-signing-key"), jwt_value)
    codes = [
        main(["rotate", "webhook-signing-secret", "--verbose"]),
        main(["rotate", "jwt-signing-key", "--verbose", "--json"]),
        main(["rotate", "webhook-signing-secret", "--verbose", "--emergency"]),
    ]
    assert codes == [0, 0, 0]
    secrets = [Secret("first webhook secret", webhook_value["secret"])]
    secrets += [
        Secret(f"first JWT key line {i}", line)
        for i, line in enumerate(_pem_lines(jwt_value["private_key"]))
    ]
    for name, field_name in (
        ("webhook-signing-secret", "secret"),
        ("jwt-signing-key", "private_key"),
    ):
        for stage in ("AWSCURRENT", "AWSPREVIOUS"):
            found = store.read(spec(name).secret_name, stage=stage)
            if found is None:
                continue
            value = str(found.value[field_name])
            if field_name == "private_key":
                secrets += [
                    Secret(f"{name} {stage} line {i}", line)
                    for i, line in enumerate(_pem_lines(value))
                ]
            else:
                secrets.append(Secret(f"{name} {stage}", value))
    assert_no_leak(rotation_capture, secrets)


# ---------------------------------------------------------------------------------------
# The responder, fed the WAF records that requests carrying credentials left behind
# ---------------------------------------------------------------------------------------


def test_the_responder_writes_no_credential_from_the_records_it_reads(sweep, monkeypatch):
    """Requests with every kind of credential are rate-limited at the edge (BLOCK
    records); the responder reads those records for the alarm and writes its log lines,
    its on-call message, its registry and idempotency items: no credential may be in
    any of them (the WAF records themselves are the edge's, swept above)."""
    from functions.api.handler import lambda_handler
    from functions.shared.blocks import aws_client
    from functions.waf_responder.events import alarm_state_change_event
    from functions.waf_responder.handler import lambda_handler as responder
    from ops.local_edge import EdgeIpSets, LocalEdge
    from tests.support.waf import create_resources, oncall_messages

    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "5")
    monkeypatch.setenv("LOGS_QUERY_DEADLINE_SECONDS", "10")
    resources = create_resources(monkeypatch)
    edge = LocalEdge(
        lambda_handler,
        rate_limit=2,
        ip_sets=EdgeIpSets.from_environment(os.environ),
        aws_client=aws_client,
        log_stream=EDGE_STREAM,
    )
    owner = sweep.world.create_user("partner@example.com")
    key = sweep.world.create_key(owner)
    token = sweep.world.token(owner)
    password = canary("PwResponder")
    for _ in range(10):
        event = rest_event(
            "POST",
            "/auth/login",
            headers={
                "X-API-Key": key,
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
            query=urllib.parse.urlencode({"api_key": key, "access_token": token}),
            body=json.dumps({"email": "partner@example.com", "password": password}),
            source_ip="203.0.113.7",
        )
        edge(event, LocalLambdaContext())
    result = responder(
        alarm_state_change_event(names.ALARM_WAF_BLOCKED),
        LocalLambdaContext(function_name="babyshield-waf-responder", timeout_seconds=60),
    )
    assert result["blocked"] == ["203.0.113.7/32"], result
    secrets = [*api_key_secret("key", key), *token_secret("token", token), Secret("pw", password)]
    found = [line for line in sweep.leaks(secrets) if not line.startswith("WAF log records")]
    written = {
        "on-call messages": json.dumps(oncall_messages(resources)),
        "responder result": json.dumps(result, default=str),
    }
    dynamodb = boto3.client("dynamodb")
    for table in (names.BLOCK_REGISTRY_TABLE, names.IDEMPOTENCY_TABLE):
        written[f"DynamoDB {table}"] = json.dumps(dynamodb.scan(TableName=table)["Items"])
    for secret in secrets:
        for surface, text in written.items():
            if any(form in text for form in secret.forms() | secret.log_only):
                found.append(f"{surface}: {secret.label}")
    assert not found, "secrets written:\n  " + "\n  ".join(found)
