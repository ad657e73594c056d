-- Tessera initial schema, PostgreSQL flavour.
--
-- Its twin is ../sqlite/0001_initial.sql. The two files must stay identical except for
-- column types (INTEGER <-> BIGINT, BLOB <-> BYTEA) and SQLite table options (STRICT,
-- WITHOUT ROWID); a unit test (store::tests::schemas_match_across_backends) compares them.
--
-- Conventions shared by both backends, so that one SQL text serves both:
--   * ids are UUID strings (TEXT); times are unix milliseconds in 64-bit integers (`*_at`);
--   * enumerations are TEXT with a CHECK listing the values;
--   * secret material exists here only as bytes sealed by the vault (AES-256-GCM, AAD bound
--     to the record id and app): never a plaintext token, API key or client secret.

-- Key/value facts about this database: schema facts, the master key fingerprint written by
-- `tessera init` (so a host started with the wrong master key refuses to run).
CREATE TABLE meta (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- Data keys of the envelope scheme, each wrapped (sealed) by the master key. The highest
-- version seals new records; data-key rotation adds a version, master-key rotation rewrites
-- `wrapped` and `wrapped_by` in place, so neither touches the credentials table at once.
CREATE TABLE data_keys (
    version    BIGINT  NOT NULL PRIMARY KEY CHECK (version > 0),
    wrapped    BYTEA   NOT NULL,
    wrapped_by TEXT    NOT NULL, -- fingerprint of the master key that wrapped it
    created_at BIGINT  NOT NULL
);

-- Registered applications. Everything below belongs to exactly one app (isolation).
CREATE TABLE apps (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL CONSTRAINT apps_name_key UNIQUE,
    created_at BIGINT  NOT NULL
);

-- Operator-provisioned workload identities of an app.
CREATE TABLE agents (
    id          TEXT    NOT NULL PRIMARY KEY,
    app_id      TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    disabled_at BIGINT,
    CONSTRAINT agents_app_name_key UNIQUE (app_id, name),
    -- target of composite foreign keys: a row can only point at an agent of its own app
    CONSTRAINT agents_id_app_key UNIQUE (id, app_id)
);

-- API keys. `id` is the public key id named in every request signature; the key itself is
-- shown once and never stored: `verifier` is the vault-sealed value derived from it.
CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    app_id       TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('app', 'agent')),
    agent_id     TEXT,
    scopes       TEXT    NOT NULL, -- Tessera scopes, space-separated
    verifier     BYTEA   NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    CONSTRAINT api_keys_agent_fkey FOREIGN KEY (agent_id, app_id)
        REFERENCES agents (id, app_id) ON DELETE CASCADE,
    CONSTRAINT api_keys_agent_check CHECK ((kind = 'agent') = (agent_id IS NOT NULL))
);
CREATE INDEX api_keys_app_idx ON api_keys (app_id);

-- Secret material (tokens + expiry, or API key fields), sealed by data key `key_version`.
-- Several grants may share one credential.
CREATE TABLE credentials (
    id          TEXT    NOT NULL PRIMARY KEY,
    app_id      TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    provider    TEXT    NOT NULL,
    sealed      BYTEA   NOT NULL,
    key_version BIGINT  NOT NULL REFERENCES data_keys (version),
    expires_at  BIGINT,                    -- access token expiry: refresh is scheduled without unsealing
    revision    BIGINT  NOT NULL DEFAULT 1, -- bumped on every reseal: refresh compares and swaps on it
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    CONSTRAINT credentials_id_app_key UNIQUE (id, app_id)
);
CREATE INDEX credentials_app_provider_idx ON credentials (app_id, provider);
CREATE INDEX credentials_key_version_idx ON credentials (key_version);

-- Grants: a principal of an app may call one provider with one credential.
-- principal_value: user and group = issuer + sub / group claim (identity module's canonical
-- form), agent = agent id, system = ''.
CREATE TABLE grants (
    id              TEXT    NOT NULL PRIMARY KEY,
    app_id          TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    provider        TEXT    NOT NULL,
    principal_kind  TEXT    NOT NULL CHECK (principal_kind IN ('user', 'group', 'system', 'agent')),
    principal_value TEXT    NOT NULL,
    credential_id   TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('oauth', 'managed_secret')),
    account_label   TEXT    NOT NULL DEFAULT '', -- which upstream account, e.g. a GitHub login
    scopes          TEXT    NOT NULL DEFAULT '', -- provider scopes granted, space-separated
    status          TEXT    NOT NULL CHECK (status IN ('active', 'reauth_required', 'revoked')),
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    last_used_at    BIGINT,
    revoked_at      BIGINT,
    -- composite: a grant can only use a credential of its own app
    CONSTRAINT grants_credential_fkey FOREIGN KEY (credential_id, app_id)
        REFERENCES credentials (id, app_id),
    CONSTRAINT grants_revoked_check CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
-- One live grant per principal, provider and upstream account; revoked ones are history.
CREATE UNIQUE INDEX grants_live_key
    ON grants (app_id, provider, principal_kind, principal_value, account_label)
    WHERE revoked_at IS NULL;
CREATE INDEX grants_principal_idx ON grants (app_id, principal_kind, principal_value);
CREATE INDEX grants_credential_idx ON grants (credential_id);

-- Replay protection for signed requests, shared by every host instance: the primary key
-- makes "seen before?" one atomic insert. No foreign key: this is a hot, short-lived table,
-- rows are written only after the signature verified, and purging handles the rest.
CREATE TABLE nonces (
    key_id     TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    CONSTRAINT nonces_pkey PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_expires_idx ON nonces (expires_at);

-- Append-only, hash-chained audit log (`tessera audit verify`). `seq` is assigned by the
-- appender, not by the database, so that the chain order is the sequence order; the unique
-- prev_hash forbids forks (two rows claiming the same predecessor). No foreign keys: audit
-- outlives the apps, keys and grants it describes. Never holds a secret.
CREATE TABLE audit (
    seq             BIGINT  NOT NULL PRIMARY KEY CHECK (seq > 0),
    id              TEXT    NOT NULL CONSTRAINT audit_id_key UNIQUE,
    at              BIGINT  NOT NULL,
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
    prev_hash       BYTEA   NOT NULL, -- hash of row seq - 1 (all zero bytes for seq 1)
    hash            BYTEA   NOT NULL CONSTRAINT audit_hash_key UNIQUE,
    CONSTRAINT audit_prev_hash_key UNIQUE (prev_hash)
);
CREATE INDEX audit_app_at_idx ON audit (app_id, at);
CREATE INDEX audit_grant_at_idx ON audit (grant_id, at);
