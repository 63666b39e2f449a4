-- Two things SQL injected on the request tiers could do that outlived the request.
-- (Row-level security is no boundary against injected SQL, which may name any caller,
-- an admin included: docs/DATABASE.md, "What row-level security does not do".)
--
-- 1. A statement whose client is gone. Injected SQL on the app login could lift its
--    statement timeout (user-settable), take LOCK TABLE subscriptions IN ACCESS
--    EXCLUSIVE MODE (the tier's table-level DELETE allows every lock mode) and sleep.
--    The Lambda that sent it timed out and was gone, but the server kept running the
--    statement with its lock and connection slot: every caller's watch list waited
--    and failed until someone ended the backend by hand. Every tier login now has
--    the server check every 10 s of a running statement that its client is still
--    there (client_connection_check_interval, PostgreSQL 14+), as the migrator's own
--    session does. It is a login default, which rotation restores with the others
--    (TIER_LOGIN_SETTINGS in functions/shared/db/roles.py), the API's pools send as a
--    startup option, and the RDS parameter group sets for every login
--    (cdk/network.py). A session can still SET it to 0 for itself: docs/DATABASE.md
--    says what bounds such a statement then.
--
-- 2. An admin's password hash. auth.replace_password_hash (015) changes a hash for a
--    caller who shows the stored one, which the app tier cannot read; but the
--    read-only tier answers any account's stored hash through auth.user_for_login,
--    and names every admin's e-mail to a caller claiming to be an admin. Injected SQL
--    on both tiers of one API could so set an admin's password to one of its choosing
--    and sign in as that admin. The function now changes a regular user's hash only:
--    an admin's hash made with an older cost keeps working (the sign-in succeeds
--    without the upgrade), and an operator remakes it as the admin login, the one
--    that writes accounts. A regular user's hash can still be replaced so
--    (docs/DATABASE.md).

ALTER ROLE {{readonly_a}} SET client_connection_check_interval = '10s';
ALTER ROLE {{readonly_b}} SET client_connection_check_interval = '10s';
ALTER ROLE {{app_a}} SET client_connection_check_interval = '10s';
ALTER ROLE {{app_b}} SET client_connection_check_interval = '10s';

-- The function belongs to the lookup role (015), which alone may replace it, and
-- replacing a function needs CREATE on its schema, which the admin group owns: as in
-- 015 and 021, the migrating login takes the role for this file and gives it back.
SET LOCAL ROLE {{admin}};
GRANT CREATE ON SCHEMA auth TO {{auth_lookup}};
RESET ROLE;

GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

-- CREATE OR REPLACE keeps the function's owner and grants (EXECUTE to the app group).
CREATE OR REPLACE FUNCTION auth.replace_password_hash(p_user uuid, p_stored text, p_new text)
    RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
        WITH changed AS (
            UPDATE public.users AS u
            SET password_hash = p_new
            WHERE u.id = p_user
              AND u.role = 'user'
              AND sha256(convert_to(u.password_hash, 'UTF8'))
                  = sha256(convert_to(p_stored, 'UTF8'))
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM changed)
    $$;

RESET ROLE;
SET LOCAL ROLE {{admin}};
REVOKE CREATE ON SCHEMA auth FROM {{auth_lookup}};
RESET ROLE;
REVOKE {{auth_lookup}} FROM CURRENT_USER;
