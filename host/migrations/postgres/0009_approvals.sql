-- Human-in-the-loop approvals, PostgreSQL flavour. Twin: ../sqlite/0009_approvals.sql.
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
    request         BYTEA   NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('pending', 'approved', 'executed', 'failed', 'denied', 'expired')),
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    decided_at      BIGINT,
    decided_by      TEXT,
    decided_via     TEXT,
    note            TEXT,
    executed_at     BIGINT,
    response_status BIGINT,
    response        BYTEA,
    error_code      TEXT
);

CREATE INDEX approvals_app_created ON approvals (app_id, created_at);
CREATE INDEX approvals_pending_expiry ON approvals (expires_at) WHERE status = 'pending';
