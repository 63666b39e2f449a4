-- What the admin login needs to rotate the read-only and app tiers: change the
-- alternating logins' passwords, and end a leaked login's sessions in an
-- emergency rotation. Nothing else about those roles.
--
-- PostgreSQL 16 and later let a CREATEROLE role alter only roles it holds with
-- ADMIN OPTION; INHERIT FALSE and SET FALSE keep it from using their privileges
-- (RDS runs 16+). PostgreSQL 15 lets CREATEROLE alter any non-superuser role, so
-- there is nothing more to grant there (the shared local server may be 15).

ALTER ROLE {{migrator}} CREATEROLE;
GRANT pg_signal_backend TO {{migrator}};

DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 160000 THEN
        EXECUTE 'GRANT {{readonly_a}}, {{readonly_b}}, {{app_a}}, {{app_b}} TO {{migrator}} '
                'WITH ADMIN OPTION, INHERIT FALSE, SET FALSE';
    END IF;
END
$$;
