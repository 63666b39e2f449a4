-- The read-only tier: what every read path of the API connects as. If an injection ever
-- reaches the database through a read, this connection cannot change anything, cannot
-- run for long and cannot see password or key hashes.

DO $$
BEGIN
    IF to_regrole('{{readonly_a}}') IS NULL THEN
        CREATE ROLE {{readonly_a}} LOGIN INHERIT;
    END IF;
    IF to_regrole('{{readonly_b}}') IS NULL THEN
        CREATE ROLE {{readonly_b}} LOGIN INHERIT;
    END IF;
END
$$;

GRANT {{readonly}} TO {{readonly_a}}, {{readonly_b}};

-- Role settings apply at login to the login role itself (not through membership),
-- so both alternating users carry them. The transaction default is a second fence:
-- the grants below are the first, and SET default_transaction_read_only = off inside a
-- session only lifts the second.
ALTER ROLE {{readonly_a}} LOGIN CONNECTION LIMIT 100;
ALTER ROLE {{readonly_b}} LOGIN CONNECTION LIMIT 100;
ALTER ROLE {{readonly_a}} SET statement_timeout = '30s';
ALTER ROLE {{readonly_b}} SET statement_timeout = '30s';
ALTER ROLE {{readonly_a}} SET default_transaction_read_only = on;
ALTER ROLE {{readonly_b}} SET default_transaction_read_only = on;
ALTER ROLE {{readonly_a}} SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE {{readonly_b}} SET idle_in_transaction_session_timeout = '60s';

GRANT USAGE ON SCHEMA public TO {{readonly}};
GRANT SELECT ON public.recalls TO {{readonly}};
GRANT SELECT ON public.subscriptions TO {{readonly}};
-- Column grants: hashes are never readable by this tier; sign-in goes through auth.*.
GRANT SELECT (id, email, role, created_at) ON public.users TO {{readonly}};
GRANT SELECT (
    key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at,
    rotated_from
) ON public.api_keys TO {{readonly}};
GRANT SELECT ON public.audit_log TO {{readonly}};
