-- A key is rotated once. Rotation gives the successor the old key's expiry and then
-- cuts the old key's life to the grace period, so a second rotation of the same key
-- (a retried request, a double click) would issue a new key that dies with the
-- grace period. The API refuses it with a 409; this index keeps the rule for any
-- writer, and two rotations racing on one key cannot both commit.
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_one_successor
    ON public.api_keys (rotated_from) WHERE rotated_from IS NOT NULL;
