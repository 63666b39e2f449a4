-- The admin lists page by (created_at, id) (functions/api/admin/pages.py): each page is
-- an index range scan from the previous page's last row instead of a sort of the whole
-- table, which only grows (every key ever issued stays: rotated, revoked, expired).
--
-- Locks: CREATE INDEX blocks writes to the table while it builds, which on these
-- tables (a row per account, a row per key) takes well under a second; a wait of more
-- than 5 s for the lock fails the deploy, which can be retried, rather than queue
-- sign-ins' rehashes and key changes behind it.
SET LOCAL lock_timeout = '5s';

SET LOCAL ROLE {{admin}};

CREATE INDEX IF NOT EXISTS users_created_at_id_idx ON public.users (created_at, id);
CREATE INDEX IF NOT EXISTS api_keys_created_at_key_id_idx
    ON public.api_keys (created_at, key_id);
