-- The audit log's id and time are the database's to assign. 004 granted the app tier
-- INSERT on the whole table, which covers every column: with OVERRIDING SYSTEM VALUE an
-- app login could write rows with ids of its choosing and any occurred_at, so it could
-- backdate a row and, by taking the ids the sequence hands out next, make the rows of
-- later sign-ins fail on the primary key (the API drops such a row and carries on).
-- The app tier keeps INSERT on the columns it writes (functions/api/identity/audit.py);
-- id and occurred_at then always take their defaults.
--
-- Revoking the table-level privilege also revokes the column privileges, so revoke
-- first and grant the columns after: re-applying gives the same result.
SET LOCAL ROLE {{admin}};

REVOKE INSERT ON public.audit_log FROM {{app}};
GRANT INSERT (actor, action, outcome, source_ip, detail) ON public.audit_log TO {{app}};
