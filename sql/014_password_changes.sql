-- Who may change a password in AWS. The RDS parameter group sets
-- rds.restrict_password_commands (cdk/network.py): PostgreSQL otherwise lets any login
-- change its own password, so SQL injected on a tier's connection could set one the
-- secret does not hold and lock the tier out until the next rotation. With it, only
-- members of rds_password change passwords. rds_superuser, which the master user
-- holds, is granted rds_password by default; the grant states it for the login that
-- rotates the tiers (the master user, which runs the migrations too) where it is not
-- a member yet. If RDS refuses the grant, the deploy goes on with a warning: the
-- membership through rds_superuser is what RDS documents, and a rotation refused
-- for want of it fails loudly (the rotation alarm) with the secret unchanged.
-- A plain PostgreSQL (local, tests) has no such role and no such restriction.
DO $$
BEGIN
    IF to_regrole('rds_password') IS NOT NULL
       AND NOT pg_has_role(CURRENT_USER, 'rds_password', 'MEMBER') THEN
        BEGIN
            EXECUTE 'GRANT rds_password TO CURRENT_USER';
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'rds_password not granted to %: %', CURRENT_USER, SQLERRM;
        END;
    END IF;
END
$$;
