-- The Idempotency-Key of the create that made a batch, if it sent one.
ALTER TABLE batches ADD COLUMN idempotency_key TEXT;

CREATE UNIQUE INDEX batches_idempotency ON batches (workspace_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
