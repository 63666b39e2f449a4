"""What the WebACL's own rules match, without the CDK: `cdk/waf.py` builds the rules
from these, and the local stack's edge (`ops/local_edge.py`) applies the same ones
(the admin allowlist, the scanner user agents and the size limits), so `make run`
refuses what those rules refuse in AWS. The WebACL's other rules, the AWS managed
rule groups, the rules that block on their labels, the login's email rule and the XSS
rule, are not emulated locally: the API's own attack inspection answers those
requests there, with its 400 rather than WAF's 403."""

from __future__ import annotations

ADMIN_PATHS = ("/admin", "/monitoring")
# The WebACL's first rule: ADMIN_PATHS only from the admin allowlist IP sets.
ADMIN_ALLOWLIST_RULE = "admin-allowlist"
# Scanners and attack tools that announce themselves; a real client never sends these.
SUSPICIOUS_USER_AGENTS = (
    "sqlmap", "nikto", "nmap", "masscan", "zgrab", "nuclei", "dirbuster", "gobuster",
    "wpscan", "acunetix", "havij", "nessus", "openvas", "w3af", "fimap", "commix",
    "hydra", "jaeles",
)  # fmt: skip
# WAF's regex engine refuses capturing groups and "a large number of | branches per
# pattern" (its documentation gives no number): a few short alternations, matched
# against the lowercased header, with neither a group nor an inline flag.
USER_AGENT_BRANCHES_PER_PATTERN = 6
# The rate rule's window: it answers 429 with "Retry after" this many seconds, and a
# client the responder blocks for being rate limited is blocked that long at first.
RATE_LIMIT_WINDOW_SECONDS = 300
# The size-limits rule's bounds besides the body's (which is `maxBodyBytes`).
MAX_URI_PATH_BYTES = 2048
MAX_QUERY_STRING_BYTES = 4096


def user_agent_patterns() -> list[str]:
    names_ = SUSPICIOUS_USER_AGENTS
    step = USER_AGENT_BRANCHES_PER_PATTERN
    return ["|".join(names_[i : i + step]) for i in range(0, len(names_), step)]
