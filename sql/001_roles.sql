-- Group roles hold every privilege; login roles only inherit them. That is what lets
-- the rotation alternate between two login users per tier without copying a grant.
-- Role names are written as double-brace placeholders: the migration runner substitutes quoted
-- identifiers (production: babyshield_*), so a test session can use a private prefix
-- on a shared cluster, where roles are cluster-wide.

DO $$
BEGIN
    IF to_regrole('{{readonly}}') IS NULL THEN
        CREATE ROLE {{readonly}} NOLOGIN NOINHERIT;
    END IF;
    IF to_regrole('{{app}}') IS NULL THEN
        CREATE ROLE {{app}} NOLOGIN NOINHERIT;
    END IF;
    IF to_regrole('{{admin}}') IS NULL THEN
        CREATE ROLE {{admin}} NOLOGIN NOINHERIT;
    END IF;
    -- Owns the pre-authentication lookups (006); nobody logs in as it or stays a member.
    IF to_regrole('{{auth_lookup}}') IS NULL THEN
        CREATE ROLE {{auth_lookup}} NOLOGIN NOINHERIT;
    END IF;
    -- The admin tier's login: DDL for migrations, nothing else.
    IF to_regrole('{{migrator}}') IS NULL THEN
        CREATE ROLE {{migrator}} LOGIN INHERIT;
    END IF;
END
$$;

-- Group roles must never log in, even if someone altered them by hand.
ALTER ROLE {{readonly}} NOLOGIN;
ALTER ROLE {{app}} NOLOGIN;
ALTER ROLE {{admin}} NOLOGIN;
ALTER ROLE {{auth_lookup}} NOLOGIN;

-- CONNECTION LIMIT and role settings are not inherited through membership (they apply
-- to the role that logs in), so they are set on each login role.
ALTER ROLE {{migrator}} LOGIN CONNECTION LIMIT 5;
GRANT {{admin}} TO {{migrator}};

-- The migrating role creates objects as the owner group (SET ROLE in later files).
GRANT {{admin}} TO CURRENT_USER;

-- Nothing may be created in public except by the owner; every other right is granted
-- explicitly per tier.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO {{admin}};

DO $$
BEGIN
    -- No temporary tables or connections for roles this project did not grant.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO {{readonly}}, {{app}}, {{admin}}',
        current_database()
    );
END
$$;

CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION {{admin}};
REVOKE ALL ON SCHEMA auth FROM PUBLIC;
