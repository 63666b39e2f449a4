"""Names of every AWS resource, shared by the CDK stack, the functions and the local stack.

One module so that `make run` creates exactly what `cdk deploy` creates, and a
function finds its resources without guessing. Functions still receive the
deployed names through environment variables (CDK sets them from here); these
constants are the defaults for the local stack and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "babyshield"

# Secrets Manager (names as the CLI and inventory spell them, prefixed).
SECRET_PREFIX = f"{PREFIX}/"


def secret_name(inventory_name: str) -> str:
    """`db-app` -> `babyshield/db-app`."""
    return f"{SECRET_PREFIX}{inventory_name}"


# DynamoDB tables (all with a TTL attribute named `expires_at`).
RATE_LIMIT_TABLE = f"{PREFIX}-rate-limits"
WEBHOOK_NONCE_TABLE = f"{PREFIX}-webhook-nonces"
BLOCK_REGISTRY_TABLE = f"{PREFIX}-block-registry"
IDEMPOTENCY_TABLE = f"{PREFIX}-idempotency"
TTL_ATTRIBUTE = "expires_at"
# Partition keys (string) of the identity tables; the item kind is a prefix of the value.
RATE_LIMIT_PARTITION_KEY = "pk"
WEBHOOK_NONCE_PARTITION_KEY = "pk"

# WAF IP sets (REGIONAL scope; v4 and v6 kept apart as WAF requires).
ADMIN_ALLOWLIST_IPSET_V4 = f"{PREFIX}-admin-allowlist-v4"
ADMIN_ALLOWLIST_IPSET_V6 = f"{PREFIX}-admin-allowlist-v6"
AUTO_BLOCK_IPSET_V4 = f"{PREFIX}-auto-block-v4"
AUTO_BLOCK_IPSET_V6 = f"{PREFIX}-auto-block-v6"
WEB_ACL = f"{PREFIX}-web-acl"
RATE_RULE = "rate-limit-per-ip"
AUTO_BLOCK_RULE_V4 = "auto-block-v4"
AUTO_BLOCK_RULE_V6 = "auto-block-v6"

# Logs, topics, parameters.
WAF_LOG_GROUP = f"aws-waf-logs-{PREFIX}"  # WAF requires the aws-waf-logs- prefix
# Request headers WAF logging replaces with REDACTED: every credential a client sends.
WAF_REDACTED_HEADERS = ("authorization", "cookie", "x-api-key")
API_LOG_GROUP = f"/aws/lambda/{PREFIX}-api"
ONCALL_TOPIC = f"{PREFIX}-oncall"
SSM_PREFIX = f"/{PREFIX}"
ADMIN_ALLOWLIST_PARAMETER = f"{SSM_PREFIX}/admin-allowed-cidrs"
NEVER_BLOCK_PARAMETER = f"{SSM_PREFIX}/never-block-cidrs"
# Its value at creation: an empty list (SSM refuses an empty string; a lone comma
# parses as no CIDR). Never derived from a deploy setting, so no deploy resets it.
NEVER_BLOCK_INITIAL = ","

# CloudWatch alarms that drive the WAF responder.
ALARM_WAF_BLOCKED = f"{PREFIX}-waf-blocked-requests"
ALARM_WAF_RATE = f"{PREFIX}-waf-rate-limited"
ALARM_FAILED_SIGNINS = f"{PREFIX}-failed-sign-ins"
# The responder's alarms, each with what it means and so where its offenders are
# found (the settings' AlarmKind; the CDK, the local stack and the CLI read it here).
RESPONDER_ALARM_KINDS = {
    ALARM_WAF_RATE: "waf-rate",
    ALARM_WAF_BLOCKED: "waf-blocked",
    ALARM_FAILED_SIGNINS: "failed-sign-ins",
}
ALARM_ROTATION_FAILURES = f"{PREFIX}-rotation-failures"
ALARM_API_5XX = f"{PREFIX}-api-5xx"
ALARM_FEED_DELIVERY_REFUSED = f"{PREFIX}-feed-delivery-refused"


def function_name(package: str) -> str:
    """`waf_responder` -> `babyshield-waf-responder` (the deployed Lambda name)."""
    return f"{PREFIX}-{package.replace('_', '-')}"


# Lambda packages under functions/ (each deployed as function_name(package)).
FUNCTION_PACKAGES = (
    "api",
    "rotate_db",
    "rotate_jwt",
    "rotate_iam",
    "waf_responder",
    "migrate",
    "secret_age",
)
SECRET_AGE_RULE = f"{PREFIX}-secret-age-daily"
SECRET_AGE_DLQ = f"{PREFIX}-secret-age-dlq"
# rotate_iam's daily sweep: a previous access key past its overlap window is deactivated.
IAM_KEY_SWEEP_RULE = f"{PREFIX}-iam-key-sweep-daily"
IAM_KEY_SWEEP_DLQ = f"{PREFIX}-iam-key-sweep-dlq"

# API Gateway and the responder's queues and schedules.
REST_API = f"{PREFIX}-api"
API_STAGE = "prod"
WAF_RESPONDER_DLQ = f"{PREFIX}-waf-responder-dlq"
WAF_ALARM_RULE = f"{PREFIX}-waf-alarm-to-responder"
WAF_SWEEP_RULE = f"{PREFIX}-waf-expiry-sweep"
SECRET_READ_RULE = f"{PREFIX}-unexpected-secret-read"
SECRET_READ_ALERT_DLQ = f"{PREFIX}-secret-read-alert-dlq"
API_ACCESS_LOG_GROUP = f"/aws/apigateway/{PREFIX}-api-access"
TRAIL = f"{PREFIX}-management-events"

# Custom metrics (namespace and the Powertools `service` dimension every metric carries).
METRICS_NAMESPACE = "BabyShield"
METRICS_SERVICE = "babyshield"
METRIC_FAILED_SIGNINS = "FailedSignIns"
METRIC_TOKEN_VALIDATION_ERRORS = "TokenValidationErrors"  # noqa: S105 - a metric name
METRIC_LOCKOUTS = "AccountLockouts"
# Sign-ins refused because their account is locked (reason SIGN_IN_ACCOUNT_LOCKED):
# apart from METRIC_FAILED_SIGNINS, whose alarm starts the WAF responder.
METRIC_SIGN_INS_REFUSED_LOCKED = "SignInsRefusedLocked"
METRIC_ROTATION_FAILURES = "RotationFailures"
METRIC_ROTATION_SUCCESSES = "RotationSuccesses"
# A signed recall-feed delivery refused by attack inspection: a recall not stored.
METRIC_FEED_DELIVERIES_REFUSED = "FeedDeliveriesRefused"
# A keyed request let through because its per-key limit could not be read.
METRIC_RATE_LIMITER_UNAVAILABLE = "RateLimiterUnavailable"
# Dimension `secret` = inventory name.
METRIC_SECRET_AGE_DAYS = "SecretAgeDays"  # noqa: S105 - a metric name
# Secrets past their period or unreadable, one datapoint per daily run (no `secret`
# dimension): the overdue alarm watches it, and a missing day counts against it.
METRIC_SECRETS_OVERDUE = "SecretsOverdue"  # pragma: allowlist secret (a metric name)
# 1 when the feed's last accepted delivery was signed with the webhook secret's
# AWSPREVIOUS (it has not been given the current one), else 0; once per daily run.
METRIC_WEBHOOK_FEED_ON_PREVIOUS = "WebhookFeedOnPreviousSecret"  # pragma: allowlist secret
# Rotations unfinished for over an hour (stopped halfway, or an emergency stopped after
# its promotion with the leaked value not retired); once per daily run.
METRIC_ROTATIONS_STUCK = "RotationsStuck"
# Inventory secrets whose rotation is off, scheduled less often than their period, or
# set to run another function than their own; once per daily run.
METRIC_ROTATION_SETTINGS_DRIFT = "RotationSettingsDrift"

# CloudWatch dashboards.
DASHBOARD_WAF = f"{PREFIX}-waf"
DASHBOARD_AUTH = f"{PREFIX}-authentication"
DASHBOARD_ROTATION = f"{PREFIX}-rotation"

# The API's log line for a failed sign-in, which the WAF responder counts per
# caller: a JSON log line whose `auth_event` is this value and whose
# `source_ip` is the caller's address (requestContext.identity.sourceIp).
AUTH_EVENT_SIGN_IN_FAILED = "sign_in_failed"
# Its reasons. The first three are evidence against the source address (the WAF
# responder's failed-sign-in offenders): a password checked and wrong, or the
# source locked by its own failures. An account locked by failures from anywhere
# refuses its owner too, so that refusal says nothing of the address it came from.
SIGN_IN_WRONG_PASSWORD = "wrong_password"  # noqa: S105  # nosec B105 - a reason, not a password  # pragma: allowlist secret
SIGN_IN_UNKNOWN_USER = "unknown_user"
SIGN_IN_SOURCE_LOCKED = "source_locked_out"
SIGN_IN_ACCOUNT_LOCKED = "locked_out"
SIGN_IN_EVIDENCE_REASONS = (SIGN_IN_WRONG_PASSWORD, SIGN_IN_UNKNOWN_USER, SIGN_IN_SOURCE_LOCKED)

# WAF responder metrics (EMF, namespace METRICS_NAMESPACE).
METRIC_WAF_IPS_BLOCKED = "WafIpsBlocked"
METRIC_WAF_IPS_EXPIRED = "WafIpsExpired"
METRIC_WAF_LOCK_RETRIES = "WafIpSetLockRetries"
METRIC_WAF_RESPONDER_ERRORS = "WafResponderErrors"

# RDS master user, held by the db-admin secret. Not `babyshield_admin`: that is
# the NOLOGIN owner group the migrations create (functions/shared/db/roles.py).
DB_MASTER_USER = "babyshield_master"

# Partition key of the rate-limit, nonce and block-registry tables (the
# idempotency table uses Powertools' defaults: `id`, TTL `expiration`).
TABLE_PARTITION_KEY = "pk"
PARTNER_EXPORT_USER = f"{PREFIX}-partner-export"


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table as the CDK stack, the local stack and the tests create it."""

    name: str
    partition_key: str
    ttl_attribute: str


TABLES = (
    TableSpec(RATE_LIMIT_TABLE, TABLE_PARTITION_KEY, TTL_ATTRIBUTE),
    TableSpec(WEBHOOK_NONCE_TABLE, TABLE_PARTITION_KEY, TTL_ATTRIBUTE),
    TableSpec(BLOCK_REGISTRY_TABLE, TABLE_PARTITION_KEY, TTL_ATTRIBUTE),
    # Powertools idempotency's own key and expiry attribute names.
    TableSpec(IDEMPOTENCY_TABLE, "id", "expiration"),
)
