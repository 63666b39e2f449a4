-- The tiers' login settings, kept on their NOLOGIN group roles as a template.
--
-- A role's defaults apply only to that role's own logins, never through membership,
-- so these settings change no session. They are what rotation restores on a login
-- before giving it a new password (functions/rotate_db/database.py): any login may
-- ALTER ROLE itself, so a leaked login could lift its own fences (read-only, timeouts)
-- for every later session, and only the admin, which alone may alter the group, can
-- put them back. They equal 003's and 004's settings of the logins; a test keeps the
-- two the same.

ALTER ROLE {{readonly}} SET statement_timeout = '30s';
ALTER ROLE {{readonly}} SET default_transaction_read_only = on;
ALTER ROLE {{readonly}} SET idle_in_transaction_session_timeout = '60s';

ALTER ROLE {{app}} SET statement_timeout = '60s';
ALTER ROLE {{app}} SET idle_in_transaction_session_timeout = '60s';
