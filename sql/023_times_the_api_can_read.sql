-- Every date and time the app tier writes stays one the API can read, and the app
-- tier writes only the columns the API writes (continuing 013 and 015).
--
-- PostgreSQL's date and timestamptz hold 'infinity', years past 9999 and BC dates;
-- Python's types end at years 1 and 9999, so one such row fails every fetch that
-- reaches it. SQL injected on the app tier's connection (row-level security is no
-- boundary against it: docs/DATABASE.md) could so:
-- - set a recall's recall_date to 'infinity', which sorts newest: every unfiltered
--   search answered 500 for every client until someone edited the row;
-- - insert a watch with such a created_at for any user (004 granted INSERT on every
--   column of subscriptions): that user's GET /me/subscriptions answered 500 for good,
--   and the list is the only place a watch's id is shown, so it could not be removed;
-- - set a key's expires_at or revoked_at to one: the key's every request and the
--   admin key list answered 500.
--
-- The tables now refuse them. A recall date is what the feed accepts
-- (functions/api/recalls/feed.py: 1900-01-01 to tomorrow in UTC; now() only grows, so
-- a row that once passed always passes, also when a dump is restored); a watch's
-- creation is finite and at most two hours ahead, as 015 bounds recalls.updated_at; a
-- key's expiry and revocation lie between 1970 and 9000 (the API sets at most ten
-- years ahead). Rows already out of range keep their meaning as far as one is left:
-- a recall dated ahead is dated tomorrow and one before 1900 on 1900-01-01; a watch
-- is stamped now; a key's 'infinity' (never) becomes NULL (never), a time before 1970
-- (long past) 1970-01-01, one past 9000 NULL.
--
-- The app tier loses INSERT on subscriptions' id and created_at and UPDATE on
-- api_keys' scopes and rate_limit_per_minute, which the API never writes
-- (functions/api/recalls/queries.py::insert_subscription,
-- functions/api/identity/store.py).
--
-- Locks: a statement that waits more than 5 s for one fails the deploy (which can be
-- retried). Each constraint is added NOT VALID and then validated, which scans the
-- table without blocking reads or writes. Revoking a table-level privilege also
-- revokes the column privileges, so revoke first and grant the columns after.
SET LOCAL lock_timeout = '5s';

SET LOCAL ROLE {{admin}};

REVOKE INSERT ON public.subscriptions FROM {{app}};
GRANT INSERT (user_id, product, brand) ON public.subscriptions TO {{app}};

REVOKE UPDATE ON public.api_keys FROM {{app}};
GRANT UPDATE (expires_at, revoked_at) ON public.api_keys TO {{app}};

UPDATE public.recalls
SET recall_date = (now() AT TIME ZONE 'UTC')::date + 1
WHERE recall_date > (now() AT TIME ZONE 'UTC')::date + 1;
UPDATE public.recalls SET recall_date = DATE '1900-01-01' WHERE recall_date < DATE '1900-01-01';

ALTER TABLE public.recalls DROP CONSTRAINT IF EXISTS recalls_recall_date_in_range;
ALTER TABLE public.recalls ADD CONSTRAINT recalls_recall_date_in_range
    CHECK (recall_date BETWEEN DATE '1900-01-01' AND (now() AT TIME ZONE 'UTC')::date + 1)
    NOT VALID;
ALTER TABLE public.recalls VALIDATE CONSTRAINT recalls_recall_date_in_range;

-- Row-level security is forced on subscriptions and api_keys, and the migration names
-- no caller: lifted for the owner (the admin group) while this transaction fixes
-- their rows, forced again before it commits, so no other session sees it lifted.
ALTER TABLE public.subscriptions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.api_keys NO FORCE ROW LEVEL SECURITY;

UPDATE public.subscriptions
SET created_at = now()
WHERE NOT isfinite(created_at)
    OR created_at > now() + interval '2 hours'
    OR created_at < TIMESTAMPTZ '1970-01-01 00:00:00+00';

ALTER TABLE public.subscriptions DROP CONSTRAINT IF EXISTS subscriptions_created_at_in_range;
ALTER TABLE public.subscriptions ADD CONSTRAINT subscriptions_created_at_in_range
    CHECK (
        created_at >= TIMESTAMPTZ '1970-01-01 00:00:00+00'
        AND created_at <= now() + interval '2 hours'
    ) NOT VALID;
ALTER TABLE public.subscriptions VALIDATE CONSTRAINT subscriptions_created_at_in_range;

UPDATE public.api_keys SET expires_at = NULL
WHERE expires_at >= TIMESTAMPTZ '9000-01-01 00:00:00+00';
UPDATE public.api_keys SET expires_at = TIMESTAMPTZ '1970-01-01 00:00:00+00'
WHERE expires_at < TIMESTAMPTZ '1970-01-01 00:00:00+00';
UPDATE public.api_keys SET revoked_at = NULL
WHERE revoked_at >= TIMESTAMPTZ '9000-01-01 00:00:00+00';
UPDATE public.api_keys SET revoked_at = TIMESTAMPTZ '1970-01-01 00:00:00+00'
WHERE revoked_at < TIMESTAMPTZ '1970-01-01 00:00:00+00';

ALTER TABLE public.api_keys DROP CONSTRAINT IF EXISTS api_keys_times_in_range;
ALTER TABLE public.api_keys ADD CONSTRAINT api_keys_times_in_range
    CHECK (
        expires_at BETWEEN TIMESTAMPTZ '1970-01-01 00:00:00+00'
            AND TIMESTAMPTZ '9000-01-01 00:00:00+00'
        AND revoked_at BETWEEN TIMESTAMPTZ '1970-01-01 00:00:00+00'
            AND TIMESTAMPTZ '9000-01-01 00:00:00+00'
    ) NOT VALID;
ALTER TABLE public.api_keys VALIDATE CONSTRAINT api_keys_times_in_range;

ALTER TABLE public.subscriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.api_keys FORCE ROW LEVEL SECURITY;

RESET ROLE;
