-- What a key's per-minute limit counts against. Rotation (009) issues a successor with
-- its own key id and keeps the old key working for the grace period, so a count per
-- key id gave a rotated key two budgets for those days. The API counts against the
-- first key of the rotation chain instead, which every key rotated from it shares,
-- and applies the smallest limit among the chain's live keys: a budget is never more
-- than any live key of the chain was granted, whichever key has since been changed.
--
-- A second pre-authentication lookup (006's rules: SECURITY DEFINER, a fixed
-- search_path, owned by the lookup role, EXECUTE for the two tiers) that the API
-- joins to api_key_for_lookup in the one statement it already sends per request.
-- A new function rather than a wider api_key_for_lookup, whose result type only a DROP
-- could change: the statement of API code deployed before this stays valid, also on
-- connections that prepared it, and API code that meets a database without this
-- function counts each key alone (functions/api/identity/store.py::api_key_record).
-- Chains are linear (009: one successor per key), so the walk costs one index probe per
-- rotation: up by the primary key, down by 009's unique index on rotated_from.

GRANT SELECT (rotated_from) ON public.api_keys TO {{auth_lookup}};

SET LOCAL ROLE {{admin}};
GRANT CREATE ON SCHEMA auth TO {{auth_lookup}};
RESET ROLE;

-- Membership only for as long as it takes to create the function as that role.
GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

-- first_key_id: the key the chain started from (the key itself if never rotated into);
-- rate_limit_per_minute: the smallest limit among the chain's live keys and this key.
-- One row for a key that exists, none otherwise.
--
-- PL/pgSQL rather than SQL: PostgreSQL 17 plans a non-inlined SQL function's query on
-- every call, and this one is called on every request with a key. PL/pgSQL keeps its
-- plans for the connection (measured locally: about +30 us per lookup, not +300 us).
CREATE OR REPLACE FUNCTION auth.api_key_chain(p_key_id text)
    RETURNS TABLE (first_key_id text, rate_limit_per_minute int)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
    DECLARE
        v_next text;
        v_limit int;
        v_live boolean;
        -- Keys already walked: a cycle, which only a hand edit of rotated_from could
        -- make, ends the walk instead of running to the statement timeout.
        v_seen text[];
    BEGIN
        SELECT k.rotated_from, k.rate_limit_per_minute INTO v_next, v_limit
        FROM public.api_keys AS k
        WHERE k.key_id = p_key_id;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        -- The key asked about always counts, so the answer is never above its own limit.
        first_key_id := p_key_id;
        rate_limit_per_minute := v_limit;
        v_seen := ARRAY[p_key_id];

        -- Up to the first key. A predecessor's id counts even if its row is gone, so
        -- every key after it still names the same one.
        WHILE v_next IS NOT NULL AND v_next <> ALL (v_seen) LOOP
            first_key_id := v_next;
            v_seen := v_seen || v_next;
            -- Live as functions/shared/identity/api_keys.py::check_api_key decides it.
            SELECT k.rotated_from, k.rate_limit_per_minute,
                   (k.revoked_at IS NULL OR k.revoked_at > now())
                   AND (k.expires_at IS NULL OR k.expires_at > now())
            INTO v_next, v_limit, v_live
            FROM public.api_keys AS k
            WHERE k.key_id = first_key_id;
            EXIT WHEN NOT FOUND;
            IF v_live THEN
                rate_limit_per_minute := least(rate_limit_per_minute, v_limit);
            END IF;
        END LOOP;
        IF v_next IS NOT NULL THEN
            -- The walk met a key twice: no first key to share, so the key counts alone.
            first_key_id := p_key_id;
        END IF;

        -- Down through the successors, whose limits bind the chain while they live.
        v_next := p_key_id;
        LOOP
            SELECT k.key_id, k.rate_limit_per_minute,
                   (k.revoked_at IS NULL OR k.revoked_at > now())
                   AND (k.expires_at IS NULL OR k.expires_at > now())
            INTO v_next, v_limit, v_live
            FROM public.api_keys AS k
            WHERE k.rotated_from = v_next;
            EXIT WHEN NOT FOUND OR v_next = ANY (v_seen);
            v_seen := v_seen || v_next;
            IF v_live THEN
                rate_limit_per_minute := least(rate_limit_per_minute, v_limit);
            END IF;
        END LOOP;
        RETURN NEXT;
    END
    $$;

REVOKE ALL ON FUNCTION auth.api_key_chain(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.api_key_chain(text) TO {{readonly}}, {{app}};

RESET ROLE;
-- Nothing may create functions that run as this role from now on.
REVOKE CREATE ON SCHEMA auth FROM {{auth_lookup}};
REVOKE {{auth_lookup}} FROM CURRENT_USER;
