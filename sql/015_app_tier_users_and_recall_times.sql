-- What SQL injected on the app tier's connection could still do to accounts and recalls,
-- closed where the grants and the table decide (row-level security is no boundary
-- against injected SQL, which may name any caller, an admin included: docs/DATABASE.md,
-- "What row-level security does not do").
--
-- 1. Accounts. 004 granted INSERT (id, email, password_hash, role), UPDATE (email,
--    password_hash) and DELETE on users for a registration that the API does not have.
--    Naming itself an admin caller, an app login could insert an admin with a hash of
--    its choosing, set any admin's hash, or delete accounts: an API admin that outlives
--    every database rotation, and the real ones locked out. Accounts are made by an
--    operator as the admin tier (ops/demo_identity.py locally).
--    What the API writes is the sign-in's rehash under a raised cost
--    (functions/api/identity/store.py::replace_password_hash): now through
--    auth.replace_password_hash, which changes a hash only for a caller who shows the
--    hash stored now. The app tier no longer runs the pre-authentication lookups
--    (006), which only the read-only tier uses, so it can read no hash to show.
--    The stored and the shown hash are compared as SHA-256 digests, so the time the
--    comparison takes says nothing of where they first differ.
--
-- 2. Recall times. upsert_recall applies a feed event only when it is newer than the
--    stored updated_at, and the app tier writes updated_at: 'infinity' made every later
--    correction of a recall's hazard or remedy look stale, for good. The API refuses an
--    event time past its clock by more than the webhook tolerance (at most an hour,
--    functions/api/recalls/feed.py::_occurred); the table now refuses one more than two
--    hours ahead, and an infinite one, so such a write holds corrections back for two
--    hours at most. A row already past that (injected, or stored before the API checked)
--    is set to now, so the next real event applies. now() only grows, so a row that
--    once passed always passes, also when a dump is restored.
--
-- Locks: a statement that waits more than 5 s for one fails the deploy (which can be
-- retried) rather than queue every request's read of recalls behind it. The constraint
-- is added NOT VALID (a brief lock, new writes checked) and then validated, which
-- scans the table without blocking reads or writes.
--
-- Revoking the table-level privilege also revokes the column privileges, so revoke
-- first and grant the columns after: re-applying gives the same result.
SET LOCAL lock_timeout = '5s';

SET LOCAL ROLE {{admin}};

REVOKE INSERT, UPDATE, DELETE ON public.users FROM {{app}};

-- The rehash runs as the lookup role (006), which nobody logs in as.
GRANT UPDATE (password_hash) ON public.users TO {{auth_lookup}};
DROP POLICY IF EXISTS users_auth_rehash ON public.users;
CREATE POLICY users_auth_rehash ON public.users FOR UPDATE TO {{auth_lookup}}
    USING (true) WITH CHECK (true);
GRANT CREATE ON SCHEMA auth TO {{auth_lookup}};

UPDATE public.recalls
SET updated_at = now()
WHERE NOT isfinite(updated_at) OR updated_at > now() + interval '2 hours';

ALTER TABLE public.recalls DROP CONSTRAINT IF EXISTS recalls_updated_at_in_range;
ALTER TABLE public.recalls ADD CONSTRAINT recalls_updated_at_in_range
    CHECK (isfinite(updated_at) AND updated_at <= now() + interval '2 hours') NOT VALID;
ALTER TABLE public.recalls VALIDATE CONSTRAINT recalls_updated_at_in_range;

RESET ROLE;

GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

CREATE OR REPLACE FUNCTION auth.replace_password_hash(p_user uuid, p_stored text, p_new text)
    RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        WITH changed AS (
            UPDATE public.users AS u
            SET password_hash = p_new
            WHERE u.id = p_user
              AND sha256(convert_to(u.password_hash, 'UTF8'))
                  = sha256(convert_to(p_stored, 'UTF8'))
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM changed)
    $$;

REVOKE ALL ON FUNCTION auth.replace_password_hash(uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.replace_password_hash(uuid, text, text) TO {{app}};

-- The lookups answer a hash for an e-mail (and, to an admin caller, the app tier lists
-- every admin's e-mail): the hash that the rehash asks for. Only the read-only tier
-- uses them (functions/api/identity/store.py).
REVOKE EXECUTE ON FUNCTION auth.user_for_login(text) FROM {{app}};
REVOKE EXECUTE ON FUNCTION auth.api_key_for_lookup(text) FROM {{app}};

RESET ROLE;
REVOKE CREATE ON SCHEMA auth FROM {{auth_lookup}};
REVOKE {{auth_lookup}} FROM CURRENT_USER;
