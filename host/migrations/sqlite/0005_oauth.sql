-- OAuth clients and connect sessions, SQLite flavour. Twin: ../postgres/0005_oauth.sql.
--
-- provider_configs: how an app talks to one OAuth provider. The client secret exists here
-- only sealed by the vault (record = config id, kind `oauth-client-secret`);
-- `client_secret_version` names the data key that sealed it. Lists are JSON arrays of
-- strings, parameter sets JSON arrays of [name, value] pairs (order kept).
CREATE TABLE provider_configs (
    id                    TEXT    NOT NULL PRIMARY KEY,
    app_id                TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    provider              TEXT    NOT NULL,
    client_id             TEXT    NOT NULL,
    client_secret         BLOB,
    client_secret_version INTEGER REFERENCES data_keys (version),
    scopes                TEXT    NOT NULL DEFAULT '[]',
    redirect_uri          TEXT,             -- NULL: the host's own /connect/callback
    extra_params          TEXT    NOT NULL DEFAULT '[]',
    connection_params     TEXT    NOT NULL DEFAULT '[]',
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    CONSTRAINT provider_configs_app_provider_key UNIQUE (app_id, provider),
    CONSTRAINT provider_configs_secret_check
        CHECK ((client_secret IS NULL) = (client_secret_version IS NULL))
) STRICT;

-- connect_sessions: one end user's way through a provider's connect flow. The link the user
-- opens and the OAuth `state` are random values stored only as SHA-256 hashes; the flow's
-- opaque component state (it may hold a PKCE verifier) is sealed (record = session id,
-- kind `connect-session`). A state is used once: the callback moves the row out of
-- 'authorizing' with a compare-and-swap before anything else happens.
CREATE TABLE connect_sessions (
    id              TEXT    NOT NULL PRIMARY KEY,
    app_id          TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    provider        TEXT    NOT NULL,
    principal_kind  TEXT    NOT NULL CHECK (principal_kind IN ('user', 'group', 'system', 'agent')),
    principal_value TEXT    NOT NULL,
    scopes          TEXT    NOT NULL DEFAULT '[]',
    connection_params TEXT  NOT NULL DEFAULT '[]',
    return_url      TEXT,
    link_hash       BLOB NOT NULL CONSTRAINT connect_sessions_link_key UNIQUE,
    state_hash      BLOB CONSTRAINT connect_sessions_state_key UNIQUE,
    sealed          BLOB,
    key_version     INTEGER REFERENCES data_keys (version),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'authorizing', 'exchanging', 'completed', 'failed')),
    grant_id        TEXT,
    error_code      TEXT,
    error_message   TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT connect_sessions_sealed_check CHECK ((sealed IS NULL) = (key_version IS NULL))
) STRICT;
CREATE INDEX connect_sessions_app_idx ON connect_sessions (app_id, created_at);

-- Refresh single-flight across host instances: a refresher takes the lease with a
-- compare-and-swap (free or expired → its own token and a deadline longer than the HTTP
-- timeout), commits the new tokens, then frees it.
ALTER TABLE credentials ADD COLUMN refresh_lease_until INTEGER;
ALTER TABLE credentials ADD COLUMN refresh_lease_owner TEXT;
