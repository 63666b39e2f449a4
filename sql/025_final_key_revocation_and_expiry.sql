-- A key's revocation is final and its expiry only comes closer.
--
-- The app tier may update api_keys' expires_at and revoked_at (013, 023): the API
-- revokes a key (revoked_at = now()) and ends a rotated key's grace window
-- (expires_at = least(expires_at, now() + grace)); it never clears a revocation or
-- moves an expiry later. SQL injected on the app tier, which may name any caller
-- (docs/DATABASE.md, "What row-level security does not do"), could do both: bring a
-- leaked key that on-call revoked back to life, or make a rotated-away key live on
-- for good. The table now refuses either to every role that does not hold the
-- table owner's privileges: the request tiers. The owner's members (the migrations,
-- the local stack's demo reset, an operator as the admin login) may still correct a
-- key; through the API a key that must work again is issued anew.

SET LOCAL ROLE {{admin}};

CREATE OR REPLACE FUNCTION auth.keep_key_ends_final()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public
    AS $$
    BEGIN
        -- No role name here: the owner's members are whoever holds the owner role.
        IF pg_has_role(current_user,
                       (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid = TG_RELID),
                       'MEMBER') THEN
            RETURN NEW;
        END IF;
        IF OLD.revoked_at IS NOT NULL
           AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
            RAISE EXCEPTION 'a key''s revocation is final'
                USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.expires_at IS NOT NULL
           AND (NEW.expires_at IS NULL OR NEW.expires_at > OLD.expires_at) THEN
            RAISE EXCEPTION 'a key''s expiry may only come closer'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$;

REVOKE ALL ON FUNCTION auth.keep_key_ends_final() FROM PUBLIC;

DROP TRIGGER IF EXISTS api_keys_ends_final ON public.api_keys;
CREATE TRIGGER api_keys_ends_final
    BEFORE UPDATE OF revoked_at, expires_at ON public.api_keys
    FOR EACH ROW EXECUTE FUNCTION auth.keep_key_ends_final();

RESET ROLE;
