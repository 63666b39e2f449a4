-- The app tier runs no pre-authentication lookup: sql/015 took away the two that
-- answer a hash, and auth.api_key_chain, granted with the read-only tier in sql/011,
-- is read only by the API key check, on the read-only tier
-- (functions/api/identity/store.py). A tier holds only the rights it uses.
GRANT {{auth_lookup}} TO CURRENT_USER;
SET LOCAL ROLE {{auth_lookup}};

REVOKE EXECUTE ON FUNCTION auth.api_key_chain(text) FROM {{app}};

RESET ROLE;
REVOKE {{auth_lookup}} FROM CURRENT_USER;
