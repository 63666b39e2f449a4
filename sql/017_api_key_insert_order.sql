-- GET /admin/api-keys pages by (created_at, key_id) from the previous page's last row
-- (sql/016). now() is the start of the inserting transaction: a key issued by one that
-- waited (for the old key's row lock in a rotation, a slow pool) was stamped behind
-- rows committed before it, behind a cursor an admin had already passed, and no page
-- of that walk listed it. A key is stamped when its row is inserted instead; the API
-- inserts under a shared advisory lock that each page read waits for
-- (functions/api/identity/store.py), so every key stamped before a page is read is
-- committed by then, and every key stamped after it sorts after that page.
--
-- Locks: changing a column default takes a short ACCESS EXCLUSIVE lock on the table;
-- a wait of more than 5 s for it fails the deploy, which can be retried.
SET LOCAL lock_timeout = '5s';

SET LOCAL ROLE {{admin}};

ALTER TABLE public.api_keys ALTER COLUMN created_at SET DEFAULT clock_timestamp();
