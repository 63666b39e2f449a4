"""Identity primitives every function may use: passwords, JWT keys and tokens,
API keys, webhook signatures, rate limits and sign-in lockout.

Heavy imports (boto3, pyjwt, cryptography) happen inside the functions that need
them, so importing this package costs nothing on a path that does not
authenticate (`GET /health`).
"""
