-- A function a later migration creates is executable by no one it does not name.
--
-- PostgreSQL grants EXECUTE on every new function to PUBLIC, and both tiers have
-- USAGE on `auth` and `public`: until now each file revoked that by hand (005, 006,
-- 011, 013, 015). A SECURITY DEFINER lookup that forgot the line, granted to one
-- tier, would run for the other too, with its owner's rights. Default privileges for
-- the two roles that own functions (the admin group and the lookup role) take the
-- grant away before any file can forget it; a file grants what a tier uses.

GRANT {{auth_lookup}} TO CURRENT_USER;

ALTER DEFAULT PRIVILEGES FOR ROLE {{admin}}, {{auth_lookup}}
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

REVOKE {{auth_lookup}} FROM CURRENT_USER;
