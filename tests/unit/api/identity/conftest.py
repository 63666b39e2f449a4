from tests.support.identity import identity_env

__all__ = ["identity_env"]
