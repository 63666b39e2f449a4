"""Database access for every function: pooled, least-privilege, scoped to the caller.

Importing this package is cheap: psycopg is imported on the first session, so a
route that never touches the database (GET /health) never loads it.
"""

from functions.shared.db.sessions import DatabaseUnavailable, readonly_session, write_session

__all__ = ["DatabaseUnavailable", "readonly_session", "write_session"]
