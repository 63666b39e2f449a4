-- pgaudit on RDS. The parameter group preloads the library and sets what it logs
-- (cdk/network.py: pgaudit.log = ddl, role, write; pgaudit.role = rds_pgaudit).
-- AWS's setup then needs the extension, whose event triggers name the objects a
-- DDL statement touches, and the role that object auditing is granted through.
-- In AWS migrations run as the RDS master user (the db-admin secret), a member of
-- rds_superuser, which may create both. A server that does not preload pgaudit
-- (the embedded and local ones: docs/DATABASE.md) is left as it is.

DO $$
BEGIN
    IF 'pgaudit' = ANY (
        string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')
    ) THEN
        IF to_regrole('rds_pgaudit') IS NULL THEN
            CREATE ROLE rds_pgaudit NOLOGIN;
        END IF;
        CREATE EXTENSION IF NOT EXISTS pgaudit;
    END IF;
END
$$;
