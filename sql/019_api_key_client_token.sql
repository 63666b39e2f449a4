-- POST /admin/api-keys takes an optional client_token, as AWS APIs take a ClientToken:
-- an admin's tool that lost the answer and sends the request again would otherwise
-- issue a second live key whose secret nobody holds. A key keeps the token it was
-- created with, and a second create for the same owner with the same token is
-- refused (409, naming the key already issued; its secret was shown once, so the way
-- on is to revoke that key if the answer never arrived, and create another). The
-- unique index keeps the rule for two creates racing with one token.
--
-- Locks: a nullable column without a default is a catalog change, and the index is
-- built on a small table; a wait of more than 5 s for the table's lock fails the
-- deploy, which can be retried.
SET LOCAL lock_timeout = '5s';

SET LOCAL ROLE {{admin}};

ALTER TABLE public.api_keys ADD COLUMN IF NOT EXISTS client_token text
    CONSTRAINT api_keys_client_token_form CHECK (client_token ~ '^[A-Za-z0-9_-]{16,64}$');
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_one_per_client_token
    ON public.api_keys (owner_id, client_token) WHERE client_token IS NOT NULL;

-- functions/api/identity/store.py: the token is written with its key, and a refused
-- create reads which key holds it. No other tier reads it.
GRANT INSERT (client_token), SELECT (client_token) ON public.api_keys TO {{app}};
