-- The audit log loses the unique index on `id`, a third B-tree every audit commit rewrote a
-- page of. Nothing looks a row up by its id (queries go by seq, app, grant or actor), and the
-- id is a UUIDv7 made by the writer (48 bits of time, 74 random). Twin: ../postgres/0013.
-- SQLite cannot drop a table constraint, so the table is rebuilt with the same columns, in
-- the same order, and its indexes made again.
CREATE TABLE audit_rebuilt (
    seq             INTEGER NOT NULL PRIMARY KEY CHECK (seq > 0),
    id              TEXT    NOT NULL,
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
