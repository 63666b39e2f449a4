"""The parts of `babyshield audit` that need AWS access: secrets, database users, WAF.

They run against whatever the shell points at (an AWS account, or the local stack
through its moto server) and only read: DescribeSecret, catalog queries as the
admin login, WAF Get/List calls. Against AWS no secret value is read: the database
check needs DATABASE_URL there (from inside the VPC) and takes the production role
names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from functions.shared.db.roles import TIER_LOGIN_SETTINGS
from ops.audit_checks import FAIL, PASS, SKIP, Check

if TYPE_CHECKING:
    from functions.shared.db.roles import RoleNames

# What sql/ sets on each login role (CONNECTION LIMIT and role settings are per
# login, not inherited): connection limit and the settings that must be present.
EXPECTED_LOGINS: dict[str, tuple[int, dict[str, str]]] = {
    "readonly": (100, TIER_LOGIN_SETTINGS["readonly"]),
    "app": (50, TIER_LOGIN_SETTINGS["app"]),
    "admin": (5, {}),
}
RLS_TABLES = ("users", "subscriptions", "api_keys", "audit_log")
# Columns no request tier reads: sign-in and key checks go through auth.* (sql/006).
SECRET_COLUMNS = (("users", "password_hash"), ("api_keys", "secret_hash"))
# Table rights sql/ gives no request tier on any table: TRUNCATE skips row-level
# security and every trigger; the read-only tier writes nothing; audit_log is append-only.
NEVER_GRANTED = {
    "readonly": ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    "app": ("TRUNCATE", "REFERENCES", "TRIGGER"),
}
APPEND_ONLY = {"audit_log": ("UPDATE", "DELETE")}

# A login's role settings: those for every database, overridden by those for this
# one (ALTER ROLE ... IN DATABASE), which win at login.
_LOGIN_SETTINGS = """
SELECT r.rolname, r.rolconnlimit, coalesce(g.setconfig, '{}'), coalesce(d.setconfig, '{}')
FROM pg_roles r
LEFT JOIN pg_db_role_setting g ON g.setrole = r.oid AND g.setdatabase = 0
LEFT JOIN pg_db_role_setting d ON d.setrole = r.oid AND d.setdatabase =
    (SELECT oid FROM pg_database WHERE datname = current_database())
WHERE r.rolname = ANY(%s)
"""

# has_any_column_privilege: a right on one column counts (INSERT, UPDATE and SELECT
# can be granted per column); DELETE, TRUNCATE, REFERENCES and TRIGGER are per table.
_TABLE_RIGHTS = """
SELECT login, c.relname, p.privilege
FROM unnest(%(logins)s::text[]) AS login,
     pg_class AS c,
     unnest(%(rights)s::text[]) AS p(privilege)
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
  AND (%(tables)s::text[] IS NULL OR c.relname = ANY(%(tables)s::text[]))
  AND CASE WHEN p.privilege IN ('INSERT', 'UPDATE', 'SELECT')
           THEN has_any_column_privilege(login, c.oid, p.privilege)
           ELSE has_table_privilege(login, c.oid, p.privilege) END
ORDER BY 1, 2, 3
"""


def check_secret_ages() -> Iterator[Check]:
    from functions.shared.rotation.age import secret_ages

    ages = secret_ages()
    late = [f"{a.name} ({a.problem or f'{a.age_days:.0f} days'})" for a in ages if a.overdue]
    # Rotation off, stretched or re-pointed: the secret is fresh now and will not be
    # rotated in time (RUNBOOK, 'Rotation switched off or re-scheduled').
    drift = [f"{a.name} ({a.rotation_problem})" for a in ages if a.rotation_problem]
    # A rotation stopped at AWSPENDING blocks the next one while the secret still looks
    # fresh: the RotationsStuck alarm's case (RUNBOOK, 'A rotation failed').
    stuck = [f"{a.name} (version {a.pending})" for a in ages if a.stuck]
    if late or drift or stuck:
        found = [f"overdue or unreadable: {', '.join(late)}"] if late else []
        found += [f"rotation not as deployed: {', '.join(drift)}"] if drift else []
        found += (
            [
                f"rotation stuck at AWSPENDING: {', '.join(stuck)}; resume or cancel it "
                "(RUNBOOK, 'A rotation failed')"
            ]
            if stuck
            else []
        )
        yield Check("secret_ages", FAIL, "; ".join(found))
        return
    oldest = max(ages, key=lambda a: (a.age_days or 0) / a.period_days)
    yield Check(
        "secret_ages",
        PASS,
        f"{len(ages)} inventory secrets within their periods "
        f"(closest to due: {oldest.name}, {oldest.age_days:.0f}/{oldest.period_days} days)",
    )


def roles_in_use() -> RoleNames:
    """The deployment's role names. In AWS the ones the migrations create there
    (PRODUCTION_ROLES): reading a tier's secret value from an operator's shell would
    raise the unexpected-secret-read alert. Against a local endpoint, from the read-only
    tier's secret (its login, or the group name a fresh stack starts on):
    `babyshield_readonly_a` -> prefix `babyshield`."""
    import re

    from functions.shared.db.roles import PRODUCTION_ROLES, RoleNames
    from functions.shared.rotation.store import CURRENT, SecretStore
    from functions.shared.settings import get_settings

    if not get_settings().aws_endpoint_url:
        return PRODUCTION_ROLES
    secret_id = get_settings().db_readonly_secret_id
    version = SecretStore(caller="babyshield-audit").read(secret_id, stage=CURRENT)
    if version is None:
        raise LookupError(f"{secret_id} has no AWSCURRENT value")
    username = str(version.value["username"])
    return RoleNames.with_prefix(re.sub(r"_readonly(_[ab])?$", "", username))


def _role_problems(conn: Any, roles: RoleNames) -> list[str]:
    from functions.shared.db.migrations import tier_role_problems

    problems = []
    rows = conn.execute(
        _LOGIN_SETTINGS,
        ([role for tier in EXPECTED_LOGINS for role in roles.login_roles(tier)],),
    ).fetchall()
    found = {
        name: (limit, _settings(everywhere) | _settings(here))
        for name, limit, everywhere, here in rows
    }
    for tier, (limit, settings) in EXPECTED_LOGINS.items():
        for role in roles.login_roles(tier):
            if role not in found:
                problems.append(f"{role} missing")
                continue
            actual_limit, actual_settings = found[role]
            if actual_limit != limit:
                problems.append(f"{role} connection limit {actual_limit} (want {limit})")
            for name, value in settings.items():
                if actual_settings.get(name) != value:
                    problems.append(f"{role} {name}={actual_settings.get(name)} (want {value})")
    problems.extend(tier_role_problems(conn, roles))
    # Each login as it logs in: a right granted to the login itself counts as much as
    # one granted to its tier's group.
    logins = {tier: [r for r in roles.login_roles(tier) if r in found] for tier in NEVER_GRANTED}
    every_login = [*logins["readonly"], *logins["app"]]
    for table, column in SECRET_COLUMNS:
        readers = conn.execute(
            "SELECT login FROM unnest(%s::text[]) AS login "
            "WHERE has_column_privilege(login, %s, %s, 'SELECT') ORDER BY 1",
            (every_login, f"public.{table}", column),
        ).fetchall()
        problems.extend(f"{login} can read {table}.{column}" for (login,) in readers)
    for tier, rights in NEVER_GRANTED.items():
        problems.extend(
            f"{login} holds {right} on {table}"
            for login, table, right in _rights_held(conn, logins[tier], rights)
        )
    for table, rights in APPEND_ONLY.items():
        problems.extend(
            f"{login} can {right} {table}, which is append-only"
            for login, _, right in _rights_held(conn, every_login, rights, [table])
        )
    unforced = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relname = ANY(%s) AND NOT (relrowsecurity AND relforcerowsecurity)",
        (list(RLS_TABLES),),
    ).fetchall()
    problems.extend(f"row-level security not forced on {name}" for (name,) in unforced)
    problems.extend(_unexpected_access(conn, roles))
    return problems


def _settings(config: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config)


def _rights_held(
    conn: Any, logins: list[str], rights: tuple[str, ...], tables: list[str] | None = None
) -> list[tuple[str, str, str]]:
    """(login, table, right) for each of `rights` a login holds on a public table."""
    found = conn.execute(
        _TABLE_RIGHTS, {"logins": logins, "rights": list(rights), "tables": tables}
    ).fetchall()
    return [(str(login), str(table), str(right)) for login, table, right in found]


# Who holds a right on the database, its tables or a tier group, beyond the roles the
# migrations made. A leaked admin password (CREATEROLE, the owner's grants) can make a
# login of its own that no emergency rotation retires: after one, this names it.
_ACCESS_HOLDERS = """
SELECT DISTINCT coalesce(r.rolname, 'PUBLIC'), x.what
FROM (
    SELECT a.grantee AS holder, 'the database' AS what
    FROM pg_database d, aclexplode(d.datacl) a
    WHERE d.datname = current_database()
    UNION ALL
    SELECT a.grantee, 'table ' || c.relname
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT m.member, 'membership of ' || g.rolname
    FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
    WHERE g.rolname = ANY(%(members_of)s)
) x
LEFT JOIN pg_roles r ON r.oid = x.holder
WHERE x.holder = 0
   OR NOT (r.rolsuper OR r.rolname = ANY(%(ours)s) OR r.rolname = current_user
           OR r.oid = (SELECT datdba FROM pg_database WHERE datname = current_database()))
ORDER BY 1, 2
"""


def _unexpected_access(conn: Any, roles: RoleNames) -> list[str]:
    # rds_pgaudit: the role pgaudit's object auditing is granted through (sql/008).
    ours = [*roles.all(), "rds_pgaudit"]
    # Membership of any of them, a login as much as a group: a member of the admin's
    # login holds the admin's rights and outlives every rotation of its password.
    rows = conn.execute(_ACCESS_HOLDERS, {"members_of": list(roles.all()), "ours": ours})
    held: dict[str, list[str]] = {}
    for holder, what in rows.fetchall():
        held.setdefault(holder, []).append(what)
    return [
        f"{holder} is no role of the deployment but holds {', '.join(whats)}"
        for holder, whats in held.items()
    ]


def check_database_users() -> Iterator[Check]:
    import psycopg

    from functions.shared.settings import get_settings
    from ops.console import CommandError
    from ops.db import admin_conninfo, connection_failure

    settings = get_settings()
    if not settings.aws_endpoint_url and not settings.database_url:
        # RDS answers only inside the VPC, and reading the db-admin secret from here
        # would raise the unexpected-secret-read alert for nothing.
        yield Check(
            "database_users",
            SKIP,
            "not checked against AWS without DATABASE_URL: the database is reachable only "
            "inside its VPC; run the audit there with DATABASE_URL to check it",
        )
        return
    try:
        roles = roles_in_use()
    except (LookupError, ValueError) as exc:
        yield Check("database_users", FAIL, f"cannot tell the deployment's roles: {exc}")
        return
    try:
        conninfo = admin_conninfo(None)
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            problems = _role_problems(conn, roles)
    except (CommandError, psycopg.OperationalError) as exc:
        # The database was meant to be checked from here (DATABASE_URL, or the local
        # stack): a login refused, after an emergency rotation say, is a check not made.
        # libpq's account names host, port and user, never the password.
        source = "DATABASE_URL" if settings.database_url else "the db-admin secret"
        yield Check(
            "database_users",
            FAIL,
            f"not performed: cannot connect as the admin login from {source}: "
            f"{connection_failure(exc)}; check {source} (after a rotation of db-admin, "
            "its current password)",
        )
        return
    except psycopg.Error as exc:
        # Reached, but a catalog query failed (a role or table the deployment should
        # have is missing): a finding, not a reason to lose the whole audit. The
        # server's own message names the object, never a connection string.
        diag = getattr(exc, "diag", None)
        reason = getattr(diag, "message_primary", None) or type(exc).__name__
        yield Check("database_users", FAIL, f"the catalog checks failed: {reason}")
        return
    if problems:
        yield Check("database_users", FAIL, "; ".join(problems))
    else:
        yield Check(
            "database_users",
            PASS,
            "tier logins carry their limits, timeouts and no other attribute; no request "
            "tier reads a hash or truncates, the read-only tier writes nothing; audit_log "
            "is append-only; RLS forced; no other role holds a right or a membership",
        )


def check_waf() -> Iterator[Check]:
    from functions.shared import names
    from functions.shared.blocks import aws_client
    from functions.shared.settings import get_settings

    wafv2 = aws_client("wafv2")
    acls = wafv2.list_web_acls(Scope="REGIONAL", Limit=100).get("WebACLs", [])
    acl = next((a for a in acls if a["Name"] == names.WEB_ACL), None)
    if acl is None:
        if get_settings().is_local:
            yield Check(
                "waf_association", SKIP, "the local stack has no WebACL: the local edge stands in"
            )
            yield Check("waf_logging", SKIP, "the local edge writes the WAF log records itself")
        else:
            yield Check("waf_association", FAIL, f"no WebACL named {names.WEB_ACL}")
            yield Check("waf_logging", FAIL, f"no WebACL named {names.WEB_ACL}")
        return
    protected = wafv2.list_resources_for_web_acl(
        WebACLArn=acl["ARN"], ResourceType="API_GATEWAY"
    ).get("ResourceArns", [])
    stage = _api_stage_arn()
    where = f"{names.REST_API}/{names.API_STAGE}"
    if stage is None:
        yield Check("waf_association", FAIL, f"no REST API named {names.REST_API}")
    elif stage in protected:
        yield Check("waf_association", PASS, f"{names.WEB_ACL} protects {where}")
    else:
        yield Check(
            "waf_association",
            FAIL,
            f"{names.WEB_ACL} is not attached to {where} "
            f"(it protects {len(protected)} other stage(s))",
        )
    try:
        logging = wafv2.get_logging_configuration(ResourceArn=acl["ARN"])["LoggingConfiguration"]
    except wafv2.exceptions.WAFNonexistentItemException:
        yield Check("waf_logging", FAIL, "WAF logging is not configured")
        return
    yield _waf_logging_check(logging)


def _api_stage_arn() -> str | None:
    """The ARN of the API's stage as WAF names what it protects, or None without the API."""
    from functions.shared import names
    from functions.shared.blocks import aws_client

    apigateway = aws_client("apigateway")
    for page in apigateway.get_paginator("get_rest_apis").paginate():
        for api in page.get("items", []):
            if api.get("name") == names.REST_API:
                region = apigateway.meta.region_name
                return (
                    f"arn:aws:apigateway:{region}::/restapis/{api['id']}/stages/{names.API_STAGE}"
                )
    return None


def _waf_logging_check(logging: dict[str, Any]) -> Check:
    """Where the WAF logs (the group the responder reads its evidence from), what it
    keeps (every BLOCK record: the evidence), and what it redacts (credentials)."""
    from functions.shared import names

    groups = [
        d.split(":log-group:", 1)[1]
        for d in logging.get("LogDestinationConfigs", [])
        if ":log-group:" in d
    ]
    fields = logging.get("RedactedFields", [])
    redacted = {f["SingleHeader"]["Name"].lower() for f in fields if "SingleHeader" in f}
    missing = sorted(set(names.WAF_REDACTED_HEADERS) - redacted)
    if not any("QueryString" in f for f in fields):
        missing.append("the query string")
    if names.WAF_LOG_GROUP not in groups:
        return Check(
            "waf_logging",
            FAIL,
            f"WAF logs go to {', '.join(groups) or 'no log group'}, not {names.WAF_LOG_GROUP}, "
            "where the responder reads its evidence",
        )
    if _may_drop_blocks(logging.get("LoggingFilter")):
        return Check(
            "waf_logging",
            FAIL,
            "the logging filter can drop BLOCK records, the responder's evidence",
        )
    if missing:
        return Check("waf_logging", FAIL, "credentials not redacted: " + ", ".join(missing))
    return Check(
        "waf_logging",
        PASS,
        f"logged to {names.WAF_LOG_GROUP} with "
        + ", ".join(sorted(redacted))
        + " and the query string redacted",
    )


def _may_drop_blocks(logging_filter: dict[str, Any] | None) -> bool:
    """Whether a WAF logging filter can drop a BLOCK record. Filters apply in order,
    the first that matches decides; a label condition may match any record."""
    if not logging_filter:
        return False
    for rule in logging_filter.get("Filters", []):
        conditions = rule.get("Conditions", [])
        actions = [c["ActionCondition"]["Action"] for c in conditions if "ActionCondition" in c]
        labelled = len(actions) < len(conditions)
        if rule.get("Requirement") == "MEETS_ALL":
            surely = all(a == "BLOCK" for a in actions) and not labelled
            maybe = all(a == "BLOCK" for a in actions)
        else:
            surely = "BLOCK" in actions
            maybe = surely or labelled
        if rule.get("Behavior") == "DROP" and maybe:
            return True
        if rule.get("Behavior") == "KEEP" and surely:
            return False
    return logging_filter.get("DefaultBehavior") == "DROP"
