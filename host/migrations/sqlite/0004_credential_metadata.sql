-- Credential metadata, SQLite flavour. Twin: ../postgres/0004_credential_metadata.sql.
--
-- `metadata` is the credential's NON-secret facts as a JSON object of strings (Stripe's
-- `mode`, AWS's `region`, Salesforce's `instance_url`): listings show them without opening
-- the sealed value, and host templates (`{shop}.myshopify.com`) are filled from them. Secret
-- fields stay in `sealed`. A revoked grant's credential keeps its row (grants reference it)
-- but `sealed` is emptied: the secret material is deleted, not merely hidden.
ALTER TABLE credentials ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
