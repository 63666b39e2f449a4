-- Row-level security: the database, not the application, decides whose rows a session
-- sees. The application sets app.user_id and app.user_role per transaction
-- (set_config(..., true), i.e. SET LOCAL) from the authenticated caller. A session that
-- set nothing has no caller, and every policy below then matches no row.
SET LOCAL ROLE {{admin}};

-- current_setting(..., true) is NULL before the first SET LOCAL and '' after it ends,
-- so both mean "no caller".
CREATE OR REPLACE FUNCTION auth.caller_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog
    AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;

CREATE OR REPLACE FUNCTION auth.caller_is_admin() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog
    AS $$
        SELECT auth.caller_id() IS NOT NULL
           AND coalesce(current_setting('app.user_role', true), '') = 'admin'
    $$;

REVOKE ALL ON FUNCTION auth.caller_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.caller_is_admin() FROM PUBLIC;
GRANT USAGE ON SCHEMA auth TO {{readonly}}, {{app}};
GRANT EXECUTE ON FUNCTION auth.caller_id() TO {{readonly}}, {{app}};
GRANT EXECUTE ON FUNCTION auth.caller_is_admin() TO {{readonly}}, {{app}};

ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
ALTER TABLE public.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.subscriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log FORCE ROW LEVEL SECURITY;

-- users: yourself; an admin caller reads and manages everyone. Registration sets
-- app.user_id to the new id first, so an insert is always "yourself".
DROP POLICY IF EXISTS users_self ON public.users;
CREATE POLICY users_self ON public.users
    USING (id = auth.caller_id() OR auth.caller_is_admin())
    WITH CHECK (id = auth.caller_id() OR auth.caller_is_admin());

-- subscriptions: your own only, admin included (nothing needs to read others' watches).
DROP POLICY IF EXISTS subscriptions_owner ON public.subscriptions;
CREATE POLICY subscriptions_owner ON public.subscriptions
    USING (user_id = auth.caller_id())
    WITH CHECK (user_id = auth.caller_id());

DROP POLICY IF EXISTS api_keys_owner ON public.api_keys;
CREATE POLICY api_keys_owner ON public.api_keys
    USING (owner_id = auth.caller_id() OR auth.caller_is_admin())
    WITH CHECK (owner_id = auth.caller_id() OR auth.caller_is_admin());

-- audit_log: anyone may append (a failed sign-in has no caller yet); reading is for the
-- actor's own rows and for admins. No UPDATE or DELETE policy exists, on top of the
-- missing grants.
DROP POLICY IF EXISTS audit_log_append ON public.audit_log;
CREATE POLICY audit_log_append ON public.audit_log FOR INSERT
    WITH CHECK (true);
DROP POLICY IF EXISTS audit_log_read ON public.audit_log;
CREATE POLICY audit_log_read ON public.audit_log FOR SELECT
    USING (auth.caller_is_admin() OR actor = auth.caller_id()::text);
