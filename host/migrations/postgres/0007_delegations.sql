-- Delegations and agent-bound connect sessions, PostgreSQL flavour. Twin: ../sqlite/0007_delegations.sql.
--
-- A delegation lets one agent of an app use one grant of the same app that does not belong to
-- it: created when a user consents on a connect page that named the agent ('consent'), or
-- when an operator maps an existing grant to an agent ('operator'). It may expire
-- (`expires_at`); revoking it (`revoked_at`, `revoked_by`: 'operator', 'agent', 'user' or
-- 'grant' when the grant itself was revoked) removes the agent's access and leaves the grant
-- alone. Revoked rows stay as history; at most one live delegation per grant and agent. An
-- expired row is closed ('expired', at its expiry) when a new delegation of the same pair is
-- made, so the unique index below only ever holds the current one.

-- Target of the composite foreign key below: a delegation can only name a grant of its app.
CREATE UNIQUE INDEX grants_id_app_key ON grants (id, app_id);

CREATE TABLE delegations (
    id          TEXT    NOT NULL PRIMARY KEY,
    app_id      TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    grant_id    TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    origin      TEXT    NOT NULL CHECK (origin IN ('consent', 'operator')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    revoked_by  TEXT CHECK (revoked_by IN ('operator', 'agent', 'user', 'grant', 'expired')),
    CONSTRAINT delegations_grant_fkey FOREIGN KEY (grant_id, app_id)
        REFERENCES grants (id, app_id) ON DELETE CASCADE,
    CONSTRAINT delegations_agent_fkey FOREIGN KEY (agent_id, app_id)
        REFERENCES agents (id, app_id) ON DELETE CASCADE,
    CONSTRAINT delegations_revoked_check CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE UNIQUE INDEX delegations_live_key ON delegations (grant_id, agent_id)
    WHERE revoked_at IS NULL;
CREATE INDEX delegations_agent_idx ON delegations (app_id, agent_id, grant_id);

-- A connect session may name the agent the user's grant will be delegated to, and how long
-- that delegation lasts (seconds; NULL: until revoked).
ALTER TABLE connect_sessions ADD COLUMN agent_id TEXT;
ALTER TABLE connect_sessions ADD COLUMN delegation_ttl_secs BIGINT;
