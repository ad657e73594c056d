-- Webhooks, SQLite flavour. Twin: ../postgres/0010_webhooks.sql.
--
-- One endpoint per app; its signing secret sealed by the vault (associated data: app id,
-- app id, 'webhook-secret'). Events are made from audit rows: `webhook_cursor` holds the
-- last audit `seq` scanned, and each event worth sending becomes one delivery whose id is
-- the audit row's id (so scanning the same rows twice, on two instances, adds nothing).
-- Payloads are built from audit rows, which hold nothing secret.
CREATE TABLE webhooks (
    app_id      TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    secret      BLOB    NOT NULL,
    events      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,
    app_id          TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_app ON webhook_deliveries (app_id, created_at);

CREATE TABLE webhook_cursor (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
) STRICT;

-- Start after what is already in the log: events are sent from now on.
INSERT INTO webhook_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM audit;
