-- A counter that every change to what a call reads of a grant increments: the grant's row
-- (but not `last_used_at`, which calls themselves keep up to date) and its credential's
-- (but not the refresh lease). Triggers keep it, so a change made by any connection or
-- process counts, in the same transaction as the change.
--
-- Why: on SQLite every commit of the request path's writer resets the page cache of every
-- other connection, so the grant read each call made re-read its pages from the file. The
-- host now keeps the grants it has read in memory, each with the counter read in the same
-- statement, and a call uses a kept grant only while the counter its own nonce transaction
-- saw is the same (`grants::GrantCache`). SQLite only: PostgreSQL reads stay as they are.
CREATE TABLE grant_epoch (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
) STRICT;
INSERT INTO grant_epoch (id, epoch) VALUES (1, 1);

CREATE TRIGGER grants_epoch_insert AFTER INSERT ON grants
BEGIN
    UPDATE grant_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
CREATE TRIGGER grants_epoch_update AFTER UPDATE OF
    id, app_id, provider, principal_kind, principal_value, credential_id, kind, account_label,
    scopes, status, created_at, updated_at, revoked_at, valid_until
    ON grants
BEGIN
    UPDATE grant_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
CREATE TRIGGER grants_epoch_delete AFTER DELETE ON grants
BEGIN
    UPDATE grant_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER credentials_epoch_insert AFTER INSERT ON credentials
BEGIN
    UPDATE grant_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
CREATE TRIGGER credentials_epoch_update AFTER UPDATE OF
    id, app_id, provider, sealed, key_version, metadata, expires_at, revision, created_at,
    updated_at
    ON credentials
BEGIN
    UPDATE grant_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
CREATE TRIGGER credentials_epoch_delete AFTER DELETE ON credentials
BEGIN
    UPDATE grant_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
