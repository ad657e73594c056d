-- The audit log loses the unique index on `id`, a third B-tree every audit commit rewrote a
-- page of. Nothing looks a row up by its id (queries go by seq, app, grant or actor), and the
-- id is a UUIDv7 made by the writer (48 bits of time, 74 random). Twin: ../sqlite/0013.
ALTER TABLE audit DROP CONSTRAINT audit_id_key;
