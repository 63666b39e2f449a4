-- The tiers' login settings leave their group roles (sql/010).
--
-- 010 kept them on each tier's NOLOGIN group as the template rotation put back on a
-- login before arming it. But the logins are members of their group and may SET ROLE
-- to it, and any role may ALTER ROLE itself ... SET: a leaked login could rewrite the
-- template with its fences lifted, and every later rotation would copy them. Rotation
-- now takes the settings from code (functions/shared/db/roles.py, TIER_LOGIN_SETTINGS,
-- which a test holds equal to 003's and 004's), so the groups keep none: a group's
-- defaults change no session (it never logs in), and one left there would only
-- mislead the next reader.

ALTER ROLE {{readonly}} RESET ALL;
ALTER ROLE {{app}} RESET ALL;
