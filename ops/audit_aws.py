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

from ops.audit_checks import FAIL, PASS, SKIP, Check

if TYPE_CHECKING:
    from functions.shared.db.roles import RoleNames

# What sql/ sets on each login role (CONNECTION LIMIT and role settings are per
# login, not inherited): connection limit and the settings that must be present.
EXPECTED_LOGINS: dict[str, tuple[int, dict[str, str]]] = {
    "readonly": (100, {"statement_timeout": "30s", "default_transaction_read_only": "on"}),
    "app": (50, {"statement_timeout": "60s"}),
    "admin": (5, {}),
}
RLS_TABLES = ("users", "subscriptions", "api_keys", "audit_log")


def check_secret_ages() -> Iterator[Check]:
    from functions.shared.rotation.age import secret_ages

    ages = secret_ages()
    late = [f"{a.name} ({a.problem or f'{a.age_days:.0f} days'})" for a in ages if a.overdue]
    if late:
        yield Check("secret_ages", FAIL, "overdue or unreadable: " + ", ".join(late))
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
    problems = []
    rows = conn.execute(
        "SELECT r.rolname, r.rolconnlimit, coalesce(s.setconfig, '{}') "
        "FROM pg_roles r LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0 "
        "WHERE r.rolname = ANY(%s)",
        ([role for tier in EXPECTED_LOGINS for role in roles.login_roles(tier)],),
    ).fetchall()
    found = {
        name: (limit, dict(item.split("=", 1) for item in config)) for name, limit, config in rows
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
    readable = conn.execute(
        "SELECT has_column_privilege(%s, 'public.users', 'password_hash', 'SELECT')",
        (roles.readonly,),
    ).fetchone()
    if readable and readable[0]:
        problems.append("the read-only tier can read users.password_hash")
    rewrites = conn.execute(
        "SELECT has_table_privilege(%s, 'public.audit_log', 'UPDATE') "
        "OR has_table_privilege(%s, 'public.audit_log', 'DELETE')",
        (roles.app, roles.app),
    ).fetchone()
    if rewrites and rewrites[0]:
        problems.append("the app tier can rewrite audit_log")
    unforced = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relname = ANY(%s) AND NOT (relrowsecurity AND relforcerowsecurity)",
        (list(RLS_TABLES),),
    ).fetchall()
    problems.extend(f"row-level security not forced on {name}" for (name,) in unforced)
    problems.extend(_unexpected_access(conn, roles))
    return problems


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
    WHERE g.rolname = ANY(%(groups)s)
) x
LEFT JOIN pg_roles r ON r.oid = x.holder
WHERE x.holder = 0
   OR NOT (r.rolsuper OR r.rolname = ANY(%(ours)s) OR r.rolname = current_user
           OR r.oid = (SELECT datdba FROM pg_database WHERE datname = current_database()))
ORDER BY 1, 2
"""


def _unexpected_access(conn: Any, roles: RoleNames) -> list[str]:
    groups = [roles.readonly, roles.app, roles.admin, roles.auth_lookup]
    # rds_pgaudit: the role pgaudit's object auditing is granted through (sql/008).
    ours = [*roles.all(), "rds_pgaudit"]
    rows = conn.execute(_ACCESS_HOLDERS, {"groups": groups, "ours": ours})
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
        reason = connection_failure(exc)
        yield Check("database_users", SKIP, f"the database is not reachable from here: {reason}")
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
            "tier logins carry their limits and timeouts; read-only cannot read hashes; "
            "audit_log is append-only; RLS forced; no other role holds a right",
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
    if protected:
        yield Check("waf_association", PASS, f"{names.WEB_ACL} protects {len(protected)} stage(s)")
    else:
        yield Check("waf_association", FAIL, f"{names.WEB_ACL} is attached to no API stage")
    try:
        logging = wafv2.get_logging_configuration(ResourceArn=acl["ARN"])["LoggingConfiguration"]
    except wafv2.exceptions.WAFNonexistentItemException:
        yield Check("waf_logging", FAIL, "WAF logging is not configured")
        return
    destinations = logging.get("LogDestinationConfigs", [])
    redacted = {
        field.get("SingleHeader", {}).get("Name", "").lower()
        for field in logging.get("RedactedFields", [])
    }
    missing = sorted(set(names.WAF_REDACTED_HEADERS) - redacted)
    if not any("aws-waf-logs-" in d for d in destinations):
        yield Check("waf_logging", FAIL, "WAF logs go to no aws-waf-logs- log group")
    elif missing:
        yield Check("waf_logging", FAIL, "credentials not redacted: " + ", ".join(missing))
    else:
        yield Check("waf_logging", PASS, "logged with " + ", ".join(sorted(redacted)) + " redacted")
