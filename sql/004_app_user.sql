-- The app tier: writes on behalf of an authenticated caller, always under RLS (005).

DO $$
BEGIN
    IF to_regrole('{{app_a}}') IS NULL THEN
        CREATE ROLE {{app_a}} LOGIN INHERIT;
    END IF;
    IF to_regrole('{{app_b}}') IS NULL THEN
        CREATE ROLE {{app_b}} LOGIN INHERIT;
    END IF;
END
$$;

GRANT {{app}} TO {{app_a}}, {{app_b}};

ALTER ROLE {{app_a}} LOGIN CONNECTION LIMIT 50;
ALTER ROLE {{app_b}} LOGIN CONNECTION LIMIT 50;
ALTER ROLE {{app_a}} SET statement_timeout = '60s';
ALTER ROLE {{app_b}} SET statement_timeout = '60s';
ALTER ROLE {{app_a}} SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE {{app_b}} SET idle_in_transaction_session_timeout = '60s';

GRANT USAGE ON SCHEMA public TO {{app}};

-- Recalls are public data fed by the upstream webhook: insert and correct, never delete.
GRANT SELECT, INSERT, UPDATE ON public.recalls TO {{app}};

-- Registration and password changes write the hash; nothing of this tier reads it back.
GRANT SELECT (id, email, role, created_at) ON public.users TO {{app}};
GRANT INSERT (id, email, password_hash, role) ON public.users TO {{app}};
GRANT UPDATE (email, password_hash) ON public.users TO {{app}};
GRANT DELETE ON public.users TO {{app}};

GRANT SELECT, INSERT, DELETE ON public.subscriptions TO {{app}};

GRANT SELECT (
    key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at,
    rotated_from
) ON public.api_keys TO {{app}};
GRANT INSERT ON public.api_keys TO {{app}};
GRANT UPDATE (scopes, rate_limit_per_minute, expires_at, revoked_at) ON public.api_keys
    TO {{app}};

-- Append-only: no SELECT, UPDATE, DELETE or TRUNCATE, so a row once written stays.
GRANT INSERT ON public.audit_log TO {{app}};
