-- Pre-authentication lookups. Sign-in must find a user by email and an API key by id
-- before any caller is known, which RLS (005) forbids to the tiers. These SECURITY
-- DEFINER functions are the only door: each returns what one lookup needs, for one
-- bound argument, and runs as a NOLOGIN role that nobody is a member of. The owner
-- group is not used for this on purpose: a bypass policy for it would also unbind the
-- admin tier, which FORCE ROW LEVEL SECURITY is there to bind.

GRANT USAGE ON SCHEMA public TO {{auth_lookup}};
GRANT SELECT (id, email, password_hash, role) ON public.users TO {{auth_lookup}};
GRANT SELECT (
    key_id, owner_id, secret_hash, scopes, rate_limit_per_minute, expires_at, revoked_at
) ON public.api_keys TO {{auth_lookup}};

SET LOCAL ROLE {{admin}};
DROP POLICY IF EXISTS users_auth_lookup ON public.users;
CREATE POLICY users_auth_lookup ON public.users FOR SELECT TO {{auth_lookup}} USING (true);
DROP POLICY IF EXISTS api_keys_auth_lookup ON public.api_keys;
CREATE POLICY api_keys_auth_lookup ON public.api_keys FOR SELECT TO {{auth_lookup}}
    USING (true);
GRANT USAGE, CREATE ON SCHEMA auth TO {{auth_lookup}};
RESET ROLE;

-- Membership only for as long as it takes to create the functions as that role.
GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

CREATE OR REPLACE FUNCTION auth.user_for_login(p_email text)
    RETURNS TABLE (id uuid, password_hash text, role text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        SELECT u.id, u.password_hash, u.role
        FROM public.users AS u
        WHERE u.email = lower(p_email)
    $$;

CREATE OR REPLACE FUNCTION auth.api_key_for_lookup(p_key_id text)
    RETURNS TABLE (
        key_id text,
        owner_id uuid,
        secret_hash bytea,
        scopes text[],
        rate_limit_per_minute int,
        expires_at timestamptz,
        revoked_at timestamptz,
        owner_role text
    )
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        SELECT k.key_id, k.owner_id, k.secret_hash, k.scopes, k.rate_limit_per_minute,
               k.expires_at, k.revoked_at, u.role
        FROM public.api_keys AS k
        JOIN public.users AS u ON u.id = k.owner_id
        WHERE k.key_id = p_key_id
    $$;

REVOKE ALL ON FUNCTION auth.user_for_login(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.api_key_for_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.user_for_login(text) TO {{readonly}}, {{app}};
GRANT EXECUTE ON FUNCTION auth.api_key_for_lookup(text) TO {{readonly}}, {{app}};

RESET ROLE;
-- Nothing may create functions that run as this role from now on.
REVOKE CREATE ON SCHEMA auth FROM {{auth_lookup}};
REVOKE {{auth_lookup}} FROM CURRENT_USER;
