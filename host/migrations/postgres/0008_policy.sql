-- Policy rules and rate-limit counters, PostgreSQL flavour. Twin: ../sqlite/0008_policy.sql.
--
-- One row per rule an operator set for an app: its name (unique in the app), the layer it
-- applies to ('app' with target '', or 'provider' / 'grant' / 'agent' with the id in
-- `target`), its kind and settings (JSON, as the API shows them) and the Cedar `forbid`
-- policy it compiles to (for a custom rule, the operator's policy as given). Nothing secret.
CREATE TABLE policy_rules (
    id          TEXT    NOT NULL PRIMARY KEY,
    app_id      TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    layer       TEXT    NOT NULL CHECK (layer IN ('app', 'provider', 'grant', 'agent')),
    target      TEXT    NOT NULL DEFAULT '',
    kind        TEXT    NOT NULL,
    settings    TEXT    NOT NULL,
    cedar       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    CONSTRAINT policy_rules_app_name_key UNIQUE (app_id, name),
    CONSTRAINT policy_rules_target_check CHECK ((layer = 'app') = (target = ''))
);

-- Rate-limit counters: calls counted per rule, per subject (a grant id or an agent id) and
-- per fixed window (its start, in Unix milliseconds). Rows of past windows are purged.
CREATE TABLE rate_counters (
    rule_id      TEXT    NOT NULL REFERENCES policy_rules (id) ON DELETE CASCADE,
    subject      TEXT    NOT NULL,
    window_start BIGINT  NOT NULL,
    calls        BIGINT  NOT NULL,
    CONSTRAINT rate_counters_pkey PRIMARY KEY (rule_id, subject, window_start)
);

-- A grant's hard expiry (its TTL, set at connect time or later): after it, calls with the
-- grant fail with grant_expired. NULL: no TTL.
ALTER TABLE grants ADD COLUMN valid_until BIGINT;
-- The TTL (seconds) a connect session gives the grant it creates; NULL: none.
ALTER TABLE connect_sessions ADD COLUMN grant_ttl_secs BIGINT;
