"""Names of every AWS resource, shared by the CDK stack, the functions and the local stack.

One module so that `make run` creates exactly what `cdk deploy` creates, and a
function finds its resources without guessing. Functions still receive the
deployed names through environment variables (CDK sets them from here); these
constants are the defaults for the local stack and tests.
"""

from __future__ import annotations

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
API_LOG_GROUP = f"/aws/lambda/{PREFIX}-api"
ONCALL_TOPIC = f"{PREFIX}-oncall"
SSM_PREFIX = f"/{PREFIX}"
ADMIN_ALLOWLIST_PARAMETER = f"{SSM_PREFIX}/admin-allowed-cidrs"
NEVER_BLOCK_PARAMETER = f"{SSM_PREFIX}/never-block-cidrs"

# CloudWatch alarms that drive the WAF responder.
ALARM_WAF_BLOCKED = f"{PREFIX}-waf-blocked-requests"
ALARM_WAF_RATE = f"{PREFIX}-waf-rate-limited"
ALARM_FAILED_SIGNINS = f"{PREFIX}-failed-sign-ins"
