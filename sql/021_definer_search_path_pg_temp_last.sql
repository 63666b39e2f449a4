-- Every SECURITY DEFINER function names pg_temp last in its search_path.
--
-- 006, 011, 013 and 015 fixed the functions' search_path to `pg_catalog, public`, but
-- a search_path that does not name pg_temp has PostgreSQL search the session's
-- temporary schema first for tables and types: a caller able to create a temporary
-- table could shadow one the function reads with its owner's rights. No tier holds
-- TEMP on this database, so nothing could; naming pg_temp last keeps it that way
-- whatever is granted later (PostgreSQL's own advice for SECURITY DEFINER).
--
-- The functions belong to the lookup role, which alone may alter them. As in 018,
-- the migrating login (in AWS RDS's master user, not a superuser) takes the role
-- for this file and gives it back.

GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname IN ('auth', 'public')
          AND p.proowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f);
    END LOOP;
END
$$;

RESET ROLE;
REVOKE {{auth_lookup}} FROM CURRENT_USER;
