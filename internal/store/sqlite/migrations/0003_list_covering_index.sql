-- Listing reads every column of up to 1,001 batches in id order. An index
-- that holds them all answers the list from the index alone, without a
-- lookup in the table per batch.
CREATE INDEX batches_list ON batches (
    workspace_id, id, seq, status, request_count, succeeded, errored, canceled, expired,
    created_at, expires_at, ended_at, cancel_initiated_at, archived_at, betas
);
