-- The app tier writes only the columns the API writes (as 012 did for audit_log), and
-- a key's predecessor is always a key of the same owner.
--
-- 004 granted INSERT on the whole of recalls and api_keys, and UPDATE on the whole of
-- recalls, which covers every column. An app login running injected SQL could then:
-- - insert recalls with ids of its choosing (OVERRIDING SYSTEM VALUE), taking the ids
--   the sequence hands out next, so later webhook upserts fail on the primary key;
--   or backdate created_at;
-- - insert a key of its own owner (RLS checks only owner_id) naming another user's
--   key as rotated_from: the victim's per-minute budget is then shared with, and
--   capped at, the attacker's key (011), and the victim's own rotation is refused
--   (009: one successor per key); or backdate its created_at.
--
-- Revoking the table-level privilege also revokes the column privileges, so revoke
-- first and grant the columns after: re-applying gives the same result.
SET LOCAL ROLE {{admin}};

REVOKE INSERT, UPDATE ON public.recalls FROM {{app}};
-- functions/api/recalls/queries.py::upsert_recall
GRANT INSERT (
    source_id, product, brand, hazard, remedy, recall_date, description, country, url,
    updated_at
) ON public.recalls TO {{app}};
GRANT UPDATE (
    product, brand, hazard, remedy, recall_date, description, country, url, updated_at
) ON public.recalls TO {{app}};

REVOKE INSERT ON public.api_keys FROM {{app}};
-- functions/api/identity/store.py: a new key, and a rotation's successor
GRANT INSERT (
    key_id, owner_id, secret_hash, scopes, rate_limit_per_minute, expires_at, rotated_from
) ON public.api_keys TO {{app}};

RESET ROLE;

-- The predecessor check runs as the lookup role (006), which reads every key's owner
-- whatever the inserting caller may see, so the check does not depend on RLS.
SET LOCAL ROLE {{admin}};
GRANT CREATE ON SCHEMA auth TO {{auth_lookup}};
RESET ROLE;

GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

CREATE OR REPLACE FUNCTION auth.check_key_predecessor()
    RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
    BEGIN
        IF NEW.rotated_from IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM public.api_keys AS k
            WHERE k.key_id = NEW.rotated_from AND k.owner_id = NEW.owner_id
        ) THEN
            RAISE EXCEPTION 'rotated_from names no key of the same owner'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NEW;
    END
    $$;

REVOKE ALL ON FUNCTION auth.check_key_predecessor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.check_key_predecessor() TO {{admin}};

RESET ROLE;
REVOKE CREATE ON SCHEMA auth FROM {{auth_lookup}};
REVOKE {{auth_lookup}} FROM CURRENT_USER;

SET LOCAL ROLE {{admin}};
DROP TRIGGER IF EXISTS api_keys_predecessor ON public.api_keys;
-- Also on UPDATE of either column: no tier may update them now, but the rule is the
-- table's, not a grant's.
CREATE TRIGGER api_keys_predecessor
    BEFORE INSERT OR UPDATE OF rotated_from, owner_id ON public.api_keys
    FOR EACH ROW EXECUTE FUNCTION auth.check_key_predecessor();
RESET ROLE;
