"""Identity primitives every function may use: passwords, JWT keys and tokens,
API keys, webhook signatures, rate limits and sign-in lockout.

Heavy imports (botocore, pyjwt, cryptography) happen inside the functions that need
them, so importing this package costs nothing on a path that does not
authenticate (`GET /health`).
"""


def reset_caches() -> None:
    """Forget cached clients, secret versions, key stores and the rate limiter's
    pause (a process that points at a new endpoint: the local stack restarting
    in-process, tests)."""
    from functions.shared.aws_clients import clear_cached_clients
    from functions.shared.identity import jwt_keys, rate_limit, secret_versions, webhook_signers

    rate_limit.pause.clear()
    secret_versions.secret_cache.clear()
    jwt_keys._stores.clear()
    webhook_signers._use_written.clear()
    clear_cached_clients()
