"""`babyshield audit` against planted defects: each check must FAIL, naming it, on the
defect it claims to detect (a PASS there is what on-call and CI would trust), and
PASS on the deployment as built."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from psycopg import sql

from functions.shared.rotation.store import SecretStore
from ops.audit_aws import check_database_users
from ops.audit_checks import FAIL, PASS
from tests.support.postgres import MigratedDatabase, aim_database_check_at, private_database

# ---------------------------------------------------------------------------
# database_users: a scratch database of this module, each plant undone after its test


@pytest.fixture(scope="module")
def scratch_db(pg_cluster: str) -> Iterator[MigratedDatabase]:
    with private_database(pg_cluster) as database:
        yield database


@pytest.fixture
def audited(
    aws: str, scratch_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> MigratedDatabase:
    """The database check aimed at the scratch database, as against the local stack."""
    aim_database_check_at(scratch_db, monkeypatch)
    return scratch_db


def planted(db: MigratedDatabase, do: str, undo: str) -> Iterator[None]:
    names = {k: sql.Identifier(v) for k, v in db.roles.as_dict().items()}
    names["db"] = sql.Identifier(db.name)
    with db.admin() as conn:
        conn.execute(sql.SQL(do).format(**names))
    try:
        yield
    finally:
        with db.admin() as conn:
            conn.execute(sql.SQL(undo).format(**names))


def database_check() -> tuple[str, str]:
    (check,) = check_database_users()
    return check.status, check.detail


def test_healthy_scratch_database_passes(audited: MigratedDatabase) -> None:
    """No false FAIL: the migrated database as sql/ makes it passes."""
    status, detail = database_check()
    assert status == PASS, detail


# (id, plant, undo, what a FAIL must name). Each is a right or setting sql/ and
# docs/DATABASE.md say a tier must not have, and that the check claims to cover.
PLANTS = [
    (
        "readonly-reads-api-key-hashes",
        "GRANT SELECT (secret_hash) ON public.api_keys TO {readonly}",
        "REVOKE SELECT (secret_hash) ON public.api_keys FROM {readonly}",
        "secret_hash",
    ),
    (
        "app-reads-password-hashes",
        "GRANT SELECT (password_hash) ON public.users TO {app}",
        "REVOKE SELECT (password_hash) ON public.users FROM {app}",
        "password_hash",
    ),
    (
        "app-truncates-audit-log",
        "GRANT TRUNCATE ON public.audit_log TO {app}",
        "REVOKE TRUNCATE ON public.audit_log FROM {app}",
        "audit_log",
    ),
    (
        "app-login-deletes-audit-log",
        "GRANT DELETE ON public.audit_log TO {app_a}",
        "REVOKE DELETE ON public.audit_log FROM {app_a}",
        "audit_log",
    ),
    (
        "readonly-writes-users",
        "GRANT UPDATE ON public.users TO {readonly}",
        "REVOKE UPDATE ON public.users FROM {readonly}",
        "users",
    ),
    (
        "app-login-bypasses-rls",
        "ALTER ROLE {app_a} BYPASSRLS",
        "ALTER ROLE {app_a} NOBYPASSRLS",
        "app_a",
    ),
    (
        "readonly-login-is-superuser",
        "ALTER ROLE {readonly_a} SUPERUSER",
        "ALTER ROLE {readonly_a} NOSUPERUSER",
        "readonly_a",
    ),
    (
        "readonly-writes-by-default-in-this-database",
        "ALTER ROLE {readonly_a} IN DATABASE {db} SET default_transaction_read_only = off",
        "ALTER ROLE {readonly_a} IN DATABASE {db} RESET default_transaction_read_only",
        "default_transaction_read_only",
    ),
    (
        "app-no-statement-timeout-in-this-database",
        "ALTER ROLE {app_a} IN DATABASE {db} SET statement_timeout = 0",
        "ALTER ROLE {app_a} IN DATABASE {db} RESET statement_timeout",
        "statement_timeout",
    ),
    (
        "readonly-idle-in-transaction-timeout-removed",
        "ALTER ROLE {readonly_a} RESET idle_in_transaction_session_timeout",
        "ALTER ROLE {readonly_a} SET idle_in_transaction_session_timeout = '60s'",
        "idle_in_transaction_session_timeout",
    ),
]


@pytest.mark.parametrize(
    ("do", "undo", "named"), [p[1:] for p in PLANTS], ids=[p[0] for p in PLANTS]
)
def test_planted_database_defect_fails_the_check(
    audited: MigratedDatabase, do: str, undo: str, named: str
) -> None:
    """A tier holding a right, an attribute or a setting sql/ never gives it is named."""
    for _ in planted(audited, do, undo):
        status, detail = database_check()
        assert status == FAIL, f"PASS with the defect planted: {detail}"
        assert named in detail, detail


def test_every_plant_was_undone(audited: MigratedDatabase) -> None:
    """The scratch database is healthy again after the plants."""
    status, detail = database_check()
    assert status == PASS, detail


@pytest.mark.parametrize("login", ["app_a", "migrator"])
def test_a_backdoor_login_in_a_tier_login_role_is_named(
    audited: MigratedDatabase, login: str
) -> None:
    """After a db-admin leak (docs/RUNBOOK.md step 4), a login made a member of a tier's
    *login* role (`GRANT babyshield_migrator TO backdoor`) connects and holds every
    right of that tier, the admin's DDL included, through every rotation: the check
    names it, so on-call drops it."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    role = getattr(audited.roles, login)
    name = f"{audited.roles.prefix}_backdoor_{login}"
    with audited.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))
    try:
        # The backdoor works: it connects and reads as the tier (trust auth here)
        with psycopg.connect(make_conninfo(audited.admin_conninfo, user=name)) as conn:
            assert conn.execute("SELECT count(*) FROM public.recalls").fetchone() is not None
        status, detail = database_check()
    finally:
        with audited.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert status == FAIL, f"PASS with a backdoor login in {role}: {detail}"
    assert name in detail, detail


# ---------------------------------------------------------------------------
# waf_association and waf_logging, against moto's WAF and API Gateway


class _Http:
    status_code = 200
    headers: ClassVar[dict[str, str]] = {}


@pytest.fixture
def waf(aws: str) -> Iterator[dict[str, str]]:
    """The deployed shape in moto: the REST API's stage, the WebACL, its log group.

    Stand-in for the one call moto lacks: moto 5 does not serve ListResourcesForWebACL,
    so a botocore event hook answers that call alone from moto's own state (the stages
    whose webAclArn is the ACL), which is what AWS answers; every other call is moto's."""
    from functions.shared import names
    from functions.shared.aws_clients import new_client
    from functions.shared.blocks import aws_client

    apigw = new_client("apigateway", region_name="us-east-1", endpoint_url=aws)
    logs = new_client("logs", region_name="us-east-1", endpoint_url=aws)

    def stage_arn(api_name: str) -> str:
        api = apigw.create_rest_api(name=api_name)["id"]
        root = apigw.get_resources(restApiId=api)["items"][0]["id"]
        apigw.put_method(restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE")
        apigw.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
        deployment = apigw.create_deployment(restApiId=api)["id"]
        apigw.create_stage(restApiId=api, stageName=names.API_STAGE, deploymentId=deployment)
        return f"arn:aws:apigateway:us-east-1::/restapis/{api}/stages/{names.API_STAGE}"

    wafv2 = aws_client("wafv2")
    acl = wafv2.create_web_acl(
        Name=names.WEB_ACL,
        Scope="REGIONAL",
        DefaultAction={"Allow": {}},
        VisibilityConfig={
            "SampledRequestsEnabled": True,
            "CloudWatchMetricsEnabled": True,
            "MetricName": "acl",
        },
    )["Summary"]
    for group in (names.WAF_LOG_GROUP, "aws-waf-logs-other"):
        logs.create_log_group(logGroupName=group)

    def resources_for_web_acl(
        params: dict[str, Any], **kwargs: object
    ) -> tuple[_Http, dict[str, Any]]:
        wanted = json.loads(params["body"])["WebACLArn"]
        arns = []
        for api in apigw.get_rest_apis()["items"]:
            for stage in apigw.get_stages(restApiId=api["id"])["item"]:
                if stage.get("webAclArn") == wanted:
                    arns.append(
                        f"arn:aws:apigateway:us-east-1::/restapis/{api['id']}"
                        f"/stages/{stage['stageName']}"
                    )
        return _Http(), {"ResourceArns": arns}

    event = "before-call.wafv2.ListResourcesForWebACL"
    wafv2.meta.events.register(
        event, resources_for_web_acl, unique_id="moto-lacks-list-resources-for-web-acl"
    )
    try:
        yield {
            "acl": acl["ARN"],
            "api_stage": stage_arn(names.REST_API),
            "other_stage": stage_arn("babyshield-api-old"),
            "log_group": f"arn:aws:logs:us-east-1:123456789012:log-group:{names.WAF_LOG_GROUP}",
            "other_log_group": "arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-other",
        }
    finally:
        wafv2.meta.events.unregister(event, unique_id="moto-lacks-list-resources-for-web-acl")


def _redacted(*, query_string: bool = True) -> list[dict[str, Any]]:
    from functions.shared import names

    fields: list[dict[str, Any]] = [
        {"SingleHeader": {"Name": h}} for h in names.WAF_REDACTED_HEADERS
    ]
    if query_string:
        fields.append({"QueryString": {}})
    return fields


def _waf_checks() -> dict[str, tuple[str, str]]:
    from ops.audit_aws import check_waf

    return {c.name: (c.status, c.detail) for c in check_waf()}


def _log(waf: dict[str, str], **config: object) -> None:
    from functions.shared.blocks import aws_client

    aws_client("wafv2").put_logging_configuration(
        LoggingConfiguration={"ResourceArn": waf["acl"], **config}
    )


def _associate(waf: dict[str, str], stage: str) -> None:
    from functions.shared.blocks import aws_client

    aws_client("wafv2").associate_web_acl(WebACLArn=waf["acl"], ResourceArn=waf[stage])


def test_waf_as_deployed_passes(waf: dict[str, str]) -> None:
    """No false FAIL: the WebACL on the API's stage, logging as cdk/waf.py."""
    _associate(waf, "api_stage")
    _log(waf, LogDestinationConfigs=[waf["log_group"]], RedactedFields=_redacted())
    checks = _waf_checks()
    assert checks["waf_association"][0] == PASS, checks
    assert checks["waf_logging"][0] == PASS, checks


def test_webacl_on_another_stage_is_not_the_api_protected(waf: dict[str, str]) -> None:
    """The WebACL protects some other (old) API's stage and babyshield-api/prod has no
    WAF at all: that is no PASS."""
    _associate(waf, "other_stage")
    _log(waf, LogDestinationConfigs=[waf["log_group"]], RedactedFields=_redacted())
    status, detail = _waf_checks()["waf_association"]
    assert status == FAIL, f"PASS while the API's stage has no WebACL: {detail}"


def test_waf_logging_into_another_log_group_fails(waf: dict[str, str]) -> None:
    """WAF logs to aws-waf-logs-other; the responder's Logs Insights queries read
    aws-waf-logs-babyshield and would find nothing."""
    _associate(waf, "api_stage")
    _log(waf, LogDestinationConfigs=[waf["other_log_group"]], RedactedFields=_redacted())
    status, detail = _waf_checks()["waf_logging"]
    assert status == FAIL, f"PASS while logging to another group: {detail}"


def test_waf_logging_filter_that_drops_every_record_fails(waf: dict[str, str]) -> None:
    """A logging filter whose default is DROP (and keeps nothing) means no WAF record
    is ever written: the blocked-requests responder has no evidence."""
    _associate(waf, "api_stage")
    _log(
        waf,
        LogDestinationConfigs=[waf["log_group"]],
        RedactedFields=_redacted(),
        LoggingFilter={
            "DefaultBehavior": "DROP",
            "Filters": [
                {
                    "Behavior": "KEEP",
                    "Requirement": "MEETS_ALL",
                    "Conditions": [{"LabelNameCondition": {"LabelName": "babyshield:never"}}],
                }
            ],
        },
    )
    status, detail = _waf_checks()["waf_logging"]
    assert status == FAIL, f"PASS while every record is dropped: {detail}"


def test_waf_logging_without_query_string_redaction_fails(waf: dict[str, str]) -> None:
    """docs/RUNBOOK.md ("After a deployment") and cdk/waf.py redact the query string
    too; a logging configuration without it writes any key or token a client put in
    the URL into the WAF log."""
    _associate(waf, "api_stage")
    _log(
        waf,
        LogDestinationConfigs=[waf["log_group"]],
        RedactedFields=_redacted(query_string=False),
    )
    status, detail = _waf_checks()["waf_logging"]
    assert status == FAIL, f"PASS without the query string redacted: {detail}"


# ---------------------------------------------------------------------------
# HTTP checks: the real API handler behind the local API Gateway, one protection removed


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # As tests/unit/ops/test_audit.py: refused admin probes' audit rows fail fast.
    from functions.shared.db.pools import close_pools

    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    close_pools()
    yield
    close_pools()


def _http_checks(handler: Any) -> dict[str, tuple[str, str]]:
    from ops.audit import Target, run_audit
    from tests.unit.ops.test_audit import serving

    with serving(handler) as url:
        results = run_audit(Target(url=url), aws_skip_reason="not here")
    return {c.name: (c.status, c.detail) for c in results}


def test_headers_missing_on_every_route_but_health_and_404_fail(no_database: None) -> None:
    """Every answer of /me, /recalls, /auth, /admin and /webhooks (the 401s, 403s, 400s
    a browser renders) comes without HSTS, CSP, nosniff or DENY framing: the audit
    received those answers itself, and checks them all."""
    from functions.api.middleware.security_headers import SECURITY_HEADERS
    from ops.local_server import api_handler

    real = api_handler()
    owned = {name.lower() for name in SECURITY_HEADERS}

    def handler(event, context):
        response = real(event, context)
        if event["path"] != "/health" and response["statusCode"] != 404:
            for key in ("headers", "multiValueHeaders"):
                response[key] = {
                    k: v for k, v in (response.get(key) or {}).items() if k.lower() not in owned
                }
        return response

    checks = _http_checks(handler)
    assert checks["security_headers"][0] == PASS  # /health and a 404: as before
    status, detail = checks["security_headers_on_every_answer"]
    assert status == FAIL, f"PASS while /me, /recalls, /admin answer without headers: {detail}"
    assert "GET /admin/users (403)" in detail


def _admin_answered_by(answer: Any) -> Any:
    """The API, with /admin and /monitoring answered by `answer(event)`: what the WAF's
    allowlist rule does in AWS for the audit's probes from outside the allowlist."""
    from ops.local_server import api_handler

    real = api_handler()

    def handler(event, context):
        if event["path"].startswith(("/admin", "/monitoring")):
            return answer(event)
        return real(event, context)

    return handler


def test_the_gateways_own_answers_pass_without_the_csp_they_cannot_carry(
    no_database: None,
) -> None:
    """API Gateway's gateway responses (cdk/api.py) carry every required header but the
    CSP, which a static header mapping cannot hold, and `x-amzn-ErrorType`: the audit
    of a deployed stack, whose admin probes the WAF refuses through them, passes, and
    says how many answers were the gateway's own."""
    from ops.local_edge import _blocked

    status, detail = _http_checks(_admin_answered_by(_blocked))["security_headers_on_every_answer"]

    assert status == PASS, detail
    assert "made by API Gateway itself" in detail


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            lambda headers: headers.pop("x-amzn-ErrorType"),
            "GET /admin/users (403): content-security-policy",
            id="the-functions-own-answer-without-csp",
        ),
        pytest.param(
            lambda headers: headers.pop("X-Content-Type-Options"),
            "GET /admin/users (403, API Gateway's own): x-content-type-options",
            id="the-gateways-answer-without-nosniff",
        ),
        pytest.param(
            lambda headers: headers.update({"Content-Type": "text/html"}),
            "GET /admin/users (403): content-security-policy",
            id="a-gateway-answer-a-browser-renders-without-csp",
        ),
    ],
)
def test_only_the_gateways_own_json_answers_may_lack_the_csp(
    no_database: None, change: Any, named: str
) -> None:
    """The CSP may be absent only where it cannot be sent: from a JSON answer API
    Gateway made itself. The function's answers need it (they are the ones a route
    could fill with the caller's input), and a gateway answer needs every other header
    as much as any answer, and the CSP too once it is something a browser renders."""
    from ops.local_edge import _blocked

    def refused(event: dict[str, Any]) -> dict[str, Any]:
        answer = _blocked(event)
        change(answer["headers"])
        return answer

    status, detail = _http_checks(_admin_answered_by(refused))["security_headers_on_every_answer"]

    assert status == FAIL, detail
    assert named in detail


def test_xss_probe_reflected_in_an_error_page_fails(no_database: None) -> None:
    """The search refuses the probe with a 400 whose text/html body repeats it
    unescaped: a reflected XSS a link can trigger, whatever the status."""
    from functions.api.middleware.security_headers import apply_security_headers
    from ops.local_server import api_handler

    real = api_handler()

    def handler(event, context):
        query = event.get("queryStringParameters") or {}
        q = query.get("q") or ""
        if event["path"] == "/recalls" and "<" in q:
            page = f"<html><body>No recalls match {q}</body></html>"
            return apply_security_headers(
                {"statusCode": 400, "headers": {"Content-Type": "text/html"}, "body": page}
            )
        return real(event, context)

    status, detail = _http_checks(handler)["xss_probes"]
    assert status == FAIL, f"PASS while the probe is reflected in a 400 page: {detail}"


def test_admin_trusting_x_forwarded_for_fails(
    no_database: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API takes the caller's address from X-Forwarded-For, so anyone who sends
    `X-Forwarded-For: <an allowlisted address>` passes the admin allowlist: the audit
    forges an address on the allowlist, not one no deployed allowlist holds. Its own
    address, without the header, is refused 403; with the header the answer is the
    identity check's 401. That 401 is the defect, not a sign that the auditor is
    allowlisted: the check FAILs naming both answers, and the audit exits 1."""
    from ops.audit import Target, run_audit
    from ops.cli import main
    from ops.local_server import api_handler
    from tests.unit.ops.test_audit import serving

    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "203.0.113.0/24")  # the admins' VPN
    real = api_handler()

    def handler(event, context):
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            event["requestContext"]["identity"]["sourceIp"] = forwarded.split(",")[0].strip()
        return real(event, context)

    # The defect is real: a forged header passes the allowlist (401: identity is next)
    import http.client
    from urllib.parse import urlsplit

    with serving(handler) as url:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=10)
        conn.request(
            "GET",
            "/admin/users",
            headers={"X-Forwarded-For": "203.0.113.7", "User-Agent": "audit-test"},
        )
        forged = conn.getresponse().status
        conn.close()
        checks = {c.name: c for c in run_audit(Target(url=url), aws_skip_reason="not here")}
        code = main(["audit", "--url", url, "--no-aws"])
    assert forged == 401

    # The auditor's address alone is refused: it is not on the allowlist
    assert checks["admin_requires_allowlist"].status == PASS, checks["admin_requires_allowlist"]
    check = checks["admin_ignores_forwarded_for"]
    assert check.status == FAIL, f"not a FAIL while a forged X-Forwarded-For opens /admin: {check}"
    assert "answered 403 without forwarding headers" in check.detail
    assert "401 with X-Forwarded-For naming 203.0.113." in check.detail
    assert code == 1


def test_a_security_header_sent_twice_fails_though_its_last_value_is_right(
    no_database: None,
) -> None:
    """Answers carry Strict-Transport-Security twice, `max-age=0` first, and
    X-Frame-Options twice, SAMEORIGIN then DENY. A browser processes only the first
    STS field (RFC 6797 8.1), and max-age=0 tells it to forget HSTS; conflicting
    X-Frame-Options values leave framing allowed (HTML, "check a navigation response's
    adherence to X-Frame-Options"). The audit reads every value, not the last one."""
    from functions.api.middleware.security_headers import SECURITY_HEADERS
    from ops.local_server import api_handler

    real = api_handler()
    doubled = {
        "Strict-Transport-Security": ["max-age=0", SECURITY_HEADERS["Strict-Transport-Security"]],
        "X-Frame-Options": ["SAMEORIGIN", "DENY"],
    }

    def sends_two(event, context):
        response = real(event, context)
        single = {k: v for k, v in (response.get("headers") or {}).items() if k not in doubled}
        multi = {
            k: v for k, v in (response.get("multiValueHeaders") or {}).items() if k not in doubled
        }
        return {**response, "headers": single, "multiValueHeaders": {**multi, **doubled}}

    checks = _http_checks(sends_two)

    status, detail = checks["security_headers"]
    assert status == FAIL, detail
    assert "strict-transport-security sent 2 times" in detail
    assert "x-frame-options sent 2 times" in detail
    assert "'max-age=0'" in detail
    status, detail = checks["security_headers_on_every_answer"]
    assert status == FAIL, detail


@pytest.mark.parametrize(
    "values",
    [
        ["max-age=0", "max-age=63072000; includeSubDomains; preload"],
        ["max-age=63072000; includeSubDomains; preload"] * 2,
    ],
    ids=["forget-first", "same-twice"],
)
def test_hsts_over_tls_sent_twice_fails(values: list[str]) -> None:
    """Browsers obey the first Strict-Transport-Security field only (RFC 6797 8.1): an
    answer with two is judged by neither alone, since a proxy or cache may reorder or
    drop one of them."""
    from ops.audit import Answer, hsts_check

    answer = Answer(
        status=200,
        headers=[("strict-transport-security", value) for value in values],
        body="{}",
    )
    check = hsts_check(answer)
    assert check.status == FAIL, check
    assert "sent 2 times" in check.detail


def test_hsts_over_tls_passes_one_long_header() -> None:
    from ops.audit import Answer, hsts_check

    answer = Answer(
        status=200,
        headers=[("strict-transport-security", "max-age=63072000; includeSubDomains; preload")],
        body="{}",
    )
    assert hsts_check(answer).status == PASS


# ---------------------------------------------------------------------------
# The whole command against the local stack, AWS checks included


def test_full_audit_of_a_healthy_local_stack_passes_and_shows_no_secret(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """`babyshield audit --url URL` as README.md runs it against
    `make run`, with the AWS checks, exits 0 with no FAIL, runs its database check,
    and prints no credential of the stack (demo passwords, API keys, the webhook
    secret, the tiers' database passwords)."""
    from functions.shared.inventory import INVENTORY
    from ops.cli import main
    from tests.support.local_stack import running_stack

    monkeypatch.chdir(tmp_path)
    with running_stack(pg_cluster) as state:
        store = SecretStore(caller="test")
        versions = [store.read(item.secret_name, stage="AWSCURRENT") for item in INVENTORY]
        values = [version.value for version in versions if version is not None]
        assert len(values) == len(INVENTORY)
        capfd.readouterr()
        code = main(["audit", "--url", state["api_url"], "--json"])
        out, _ = capfd.readouterr()
    checks = {c["name"]: c for c in json.loads(out[out.index('{\n  "checks"') :])["checks"]}
    assert code == 0, checks
    assert checks["database_users"]["status"] == PASS, checks["database_users"]
    assert checks["secret_ages"]["status"] == PASS, checks["secret_ages"]
    secrets = [u["password"] for u in state["users"]]
    secrets += [k["key"] for k in state["api_keys"]]
    secrets += [state["webhook_secret"]]
    for value in values:
        secrets += [
            v
            for k, v in value.items()
            if k not in ("engine", "host", "dbname", "username") and isinstance(v, str)
        ]
    report = "\n".join(f"{c['status']} {c['name']} {c['detail']}" for c in checks.values())
    assert len(secrets) > 10
    for secret in secrets:
        assert secret not in report, "a credential of the stack is in the report"
