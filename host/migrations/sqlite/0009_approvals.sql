-- Human-in-the-loop approvals, SQLite flavour. Twin: ../postgres/0009_approvals.sql.
--
-- One row per proxied request a require-approval policy rule held. `request` is the exact
-- request (method, URL, headers, body) sealed by the vault (associated data: approval id,
-- app, 'approval-request'); `request_sha256` is the SHA-256 of those plaintext bytes, checked
-- again before they are sent. `response` is the provider's answer to the sent request,
-- sealed the same way ('approval-response'). `url` is the URL with secret query values
-- redacted, for lists. Status changes are compare-and-swap updates: one decision wins.
CREATE TABLE approvals (
    id              TEXT    NOT NULL PRIMARY KEY,
    app_id          TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    grant_id        TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    principal       TEXT    NOT NULL,
    agent_id        TEXT,
    key_id          TEXT    NOT NULL,
    caller          TEXT,
    reason          TEXT,
    context         TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    request_sha256  TEXT    NOT NULL,
    request         BLOB    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('pending', 'approved', 'executed', 'failed', 'denied', 'expired')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    decided_at      INTEGER,
    decided_by      TEXT,
    decided_via     TEXT,
    note            TEXT,
    executed_at     INTEGER,
    response_status INTEGER,
    response        BLOB,
    error_code      TEXT
) STRICT;

CREATE INDEX approvals_app_created ON approvals (app_id, created_at);
CREATE INDEX approvals_pending_expiry ON approvals (expires_at) WHERE status = 'pending';
