-- Two things SQL injected on the app tier's connection could still do, closed where the
-- grants and the table decide (row-level security is no boundary against injected SQL,
-- which may name any caller: docs/DATABASE.md, "What row-level security does not do").
--
-- 1. Mint an admin. 004 granted INSERT (id, email, password_hash, role) and DELETE on
--    users for a registration that the API does not have: an app login could insert an
--    account with role 'admin' and a hash of its choosing, an API admin that survives
--    every database rotation, or delete accounts. Accounts are made by an operator as
--    the admin tier (ops/demo_identity.py locally). The app tier keeps what the API
--    does: rehash a password on sign-in (functions/api/identity/store.py), so UPDATE of
--    password_hash alone, not email.
--
-- 2. Freeze a recall. upsert_recall applies a feed event only when it is newer than the
--    stored updated_at, and the app tier writes updated_at: 'infinity', or any time in
--    the future, made every later correction of a recall's hazard or remedy look stale.
--    The API refuses an event time past the clock by more than the webhook tolerance
--    (at most an hour, functions/api/recalls/feed.py::_occurred); the table now refuses
--    one more than two hours ahead, and an infinite one. A row already past that
--    (injected, or stored before the API checked) is set to now, so the next real
--    event applies. now() only grows, so a row that once passed always passes.
--
-- Revoking the table-level privilege also revokes the column privileges, so revoke
-- first and grant the columns after: re-applying gives the same result.
SET LOCAL ROLE {{admin}};

REVOKE INSERT, UPDATE, DELETE ON public.users FROM {{app}};
GRANT UPDATE (password_hash) ON public.users TO {{app}};

UPDATE public.recalls
SET updated_at = now()
WHERE NOT isfinite(updated_at) OR updated_at > now() + interval '2 hours';

ALTER TABLE public.recalls DROP CONSTRAINT IF EXISTS recalls_updated_at_in_range;
ALTER TABLE public.recalls ADD CONSTRAINT recalls_updated_at_in_range
    CHECK (isfinite(updated_at) AND updated_at <= now() + interval '2 hours');

RESET ROLE;
