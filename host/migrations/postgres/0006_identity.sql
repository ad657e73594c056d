-- Identity providers and the audit actor index, PostgreSQL flavour. Twin: ../sqlite/0006_identity.sql.
--
-- idp_configs: how an app's end users are identified — the issuer their JWTs carry, where its
-- keys are (NULL: the jwks_uri of its discovery document), the accepted audiences (JSON array
-- of strings), the claim listing a user's groups, the accepted algorithms (JSON array; empty:
-- every asymmetric one) and the clock leeway. Nothing secret: an IdP is trusted through its
-- public keys.
CREATE TABLE idp_configs (
    app_id       TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    issuer       TEXT    NOT NULL,
    jwks_url     TEXT,
    audiences    TEXT    NOT NULL,
    groups_claim TEXT,
    algorithms   TEXT    NOT NULL DEFAULT '[]',
    leeway_secs  BIGINT NOT NULL DEFAULT 60,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- An agent reads only its own audit trail (actor kind 'agent', its id), in order.
CREATE INDEX audit_actor_idx ON audit (actor_kind, actor_id, seq);
