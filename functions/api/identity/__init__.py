"""The API's side of identity: who the caller is, the audit trail, and the SQL
behind sign-in, API-key lookup, key management and the recall webhook."""
