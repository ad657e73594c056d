-- The wallet's sign-in, PostgreSQL flavour. Twin: ../sqlite/0011_wallet.sql.
--
-- `wallet_logins`: one row per sign-in under way, keyed by the SHA-256 of its OAuth `state`
-- (the state itself is only in the browser's redirect); the PKCE verifier sealed by the
-- vault (associated data: the state hash, 'wallet', 'wallet-login'); claimed once.
-- `wallet_sessions`: one row per signed-in browser, keyed by the SHA-256 of the session
-- cookie's value (the value itself is only in the cookie).
CREATE TABLE wallet_logins (
    state_hash  TEXT    NOT NULL PRIMARY KEY,
    verifier    BYTEA   NOT NULL,
    nonce       TEXT    NOT NULL,
    return_to   TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);

CREATE TABLE wallet_sessions (
    id_hash     TEXT    NOT NULL PRIMARY KEY,
    issuer      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    email       TEXT,
    name        TEXT,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);

CREATE INDEX wallet_sessions_expiry ON wallet_sessions (expires_at);
