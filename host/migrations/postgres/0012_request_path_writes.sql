-- What every call writes, made cheaper to write (see BENCHMARKS.md, "What limits it").
--
-- Nonces are keyed by (expires_at, key_id, nonce): a request's window end grows with time, so
-- inserts land at the right edge of one index instead of a random leaf of the key plus a
-- second index, and the purge deletes a range at the left edge. A replay carries the same
-- signed `created`, hence the same `expires_at`, so it still collides on the key.
ALTER TABLE nonces DROP CONSTRAINT nonces_pkey;
ALTER TABLE nonces ADD CONSTRAINT nonces_pkey PRIMARY KEY (expires_at, key_id, nonce);
DROP INDEX nonces_expires_idx;

-- The audit log loses its unique indexes on `hash` and `prev_hash`: each was a random-leaf
-- insert per row (SHA-256 values), and neither adds to what `seq` (the primary key, taken in
-- order under the appenders' lock) and `tessera audit verify` (every row's prev_hash against
-- the row before) already guarantee.
ALTER TABLE audit DROP CONSTRAINT audit_hash_key;
ALTER TABLE audit DROP CONSTRAINT audit_prev_hash_key;
