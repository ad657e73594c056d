-- What every call writes, made cheaper to write (see BENCHMARKS.md, "What limits it").
--
-- Nonces are keyed by (expires_at, key_id, nonce): a request's window end grows with time, so
-- inserts land at the right edge of one B-tree instead of a random leaf of the key plus a
-- second index, and the purge deletes a range at the left edge. A replay carries the same
-- signed `created`, hence the same `expires_at`, so it still collides on the key.
CREATE TABLE nonces_by_expiry (
    key_id     TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    CONSTRAINT nonces_pkey PRIMARY KEY (expires_at, key_id, nonce)
) STRICT, WITHOUT ROWID;
INSERT INTO nonces_by_expiry (key_id, nonce, expires_at)
    SELECT key_id, nonce, expires_at FROM nonces;
DROP TABLE nonces;
ALTER TABLE nonces_by_expiry RENAME TO nonces;

-- The audit log loses its unique indexes on `hash` and `prev_hash`: each was a random-leaf
-- insert per row (SHA-256 values), and neither adds to what `seq` (the primary key, taken in
-- order under the appenders' lock) and `tessera audit verify` (every row's prev_hash against
-- the row before) already guarantee. SQLite cannot drop a table constraint, so the table is
-- rebuilt with the same columns, in the same order.
CREATE TABLE audit_rebuilt (
    seq             INTEGER NOT NULL PRIMARY KEY CHECK (seq > 0),
    id              TEXT    NOT NULL CONSTRAINT audit_id_key UNIQUE,
    at              INTEGER NOT NULL,
    app_id          TEXT,
    actor_kind      TEXT    NOT NULL, -- app_key | agent | user | operator | host
    actor_id        TEXT    NOT NULL,
    key_id          TEXT,
    caller          TEXT,             -- SDK-declared attribution, not an access boundary
    action          TEXT    NOT NULL, -- e.g. proxy.execute, tokens.retrieve, grant.revoke
    provider        TEXT,
    grant_id        TEXT,
    principal_kind  TEXT,
    principal_value TEXT,
    outcome         TEXT    NOT NULL, -- ok | denied | error | pending
    reason          TEXT,             -- the developer's per-call reason
    context         TEXT,             -- JSON object of free-form strings
    request_id      TEXT,
    detail          TEXT,             -- JSON; never secret material
    prev_hash       BLOB    NOT NULL, -- hash of row seq - 1 (all zero bytes for seq 1)
    hash            BLOB    NOT NULL
) STRICT;
INSERT INTO audit_rebuilt SELECT * FROM audit;
DROP TABLE audit;
ALTER TABLE audit_rebuilt RENAME TO audit;
CREATE INDEX audit_app_at_idx ON audit (app_id, at);
CREATE INDEX audit_grant_at_idx ON audit (grant_id, at);
CREATE INDEX audit_actor_idx ON audit (actor_kind, actor_id, seq);
