-- API key fingerprints, PostgreSQL flavour. Twin: ../sqlite/0002_api_key_fingerprint.sql.
--
-- `fingerprint` is hex(SHA-256(full API key string)) (docs/SIGNING.md §1): one-way, so an
-- operator can identify a leaked key by pasting it, without the host storing the key.
-- `verifier` (0001) holds the key's derived signing key, sealed by the vault with associated
-- data (record id = key id, app = app id, kind = "api-key-signing").
-- The default only satisfies ALTER TABLE for rows written before this migration (none: no
-- earlier version created keys); every key created since has its fingerprint.
ALTER TABLE api_keys ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
CREATE INDEX api_keys_fingerprint_idx ON api_keys (fingerprint);
