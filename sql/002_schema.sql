-- Tables are owned by the admin group role so that FORCE ROW LEVEL SECURITY (004)
-- binds the owner too, and so that no login role owns anything.
SET LOCAL ROLE {{admin}};

CREATE TABLE IF NOT EXISTS public.recalls (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id text NOT NULL UNIQUE,
    product text NOT NULL,
    brand text NOT NULL,
    hazard text NOT NULL,
    remedy text NOT NULL,
    recall_date date NOT NULL,
    description text,
    country text,
    url text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Full-text search without an extension: english stemming matches "cribs" to "crib".
    search tsvector GENERATED ALWAYS AS (
        to_tsvector(
            'english'::regconfig,
            product || ' ' || brand || ' ' || hazard || ' ' || coalesce(description, '')
        )
    ) STORED
);

-- Keyset pagination walks (recall_date, id) descending.
CREATE INDEX IF NOT EXISTS recalls_date_id_idx ON public.recalls (recall_date DESC, id DESC);
CREATE INDEX IF NOT EXISTS recalls_brand_idx ON public.recalls (lower(brand));
CREATE INDEX IF NOT EXISTS recalls_search_idx ON public.recalls USING gin (search);

CREATE TABLE IF NOT EXISTS public.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('user', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    product text NOT NULL,
    brand text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- A watch without a brand is still one watch: NULL brands collide too.
    UNIQUE NULLS NOT DISTINCT (user_id, product, brand)
);

CREATE TABLE IF NOT EXISTS public.api_keys (
    key_id text PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES public.users (id),
    secret_hash bytea NOT NULL,
    scopes text[] NOT NULL,
    rate_limit_per_minute int NOT NULL DEFAULT 60 CHECK (rate_limit_per_minute > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    rotated_from text
);
CREATE INDEX IF NOT EXISTS api_keys_owner_idx ON public.api_keys (owner_id);

CREATE TABLE IF NOT EXISTS public.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor text,
    action text NOT NULL,
    outcome text NOT NULL,
    source_ip inet,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_occurred_idx ON public.audit_log (occurred_at);
