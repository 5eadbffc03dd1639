-- API keys, stored as the SHA-256 hash of the key.
CREATE TABLE api_keys (
    hash         text PRIMARY KEY,
    workspace_id text NOT NULL,
    created_at   timestamptz NOT NULL
);

-- Hands out each batch's seq, which ties its requests to it.
CREATE SEQUENCE batch_seq AS bigint;

-- Batches that are being written. A create takes a seq here, writes its
-- requests in chunks, touching touched_at with each chunk, then inserts the
-- batch row and deletes its staging row in one transaction. Requests whose seq
-- has no batch row are invisible to every reader.
CREATE TABLE batch_staging (
    seq        bigint PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    touched_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX batch_staging_touched ON batch_staging (touched_at);

-- Ids compare byte by byte (COLLATE "C"), as list cursors require, whatever
-- the database's collation is.
CREATE TABLE batches (
    seq                 bigint PRIMARY KEY,
    id                  text COLLATE "C" NOT NULL UNIQUE,
    workspace_id        text NOT NULL,
    status              text NOT NULL
                        CHECK (status IN ('in_progress', 'canceling', 'ended')),
    request_count       bigint NOT NULL,
    succeeded           bigint NOT NULL DEFAULT 0,
    errored             bigint NOT NULL DEFAULT 0,
    canceled            bigint NOT NULL DEFAULT 0,
    expired             bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    ended_at            timestamptz,
    cancel_initiated_at timestamptz,
    archived_at         timestamptz,
    betas               text[] NOT NULL DEFAULT '{}'
);

CREATE UNIQUE INDEX batches_workspace_id ON batches (workspace_id, id);
CREATE INDEX batches_active ON batches (created_at, id) WHERE status <> 'ended';
CREATE INDEX batches_unarchived ON batches (created_at) WHERE archived_at IS NULL;

-- One row per request; request_index is its position in the batch, from 0.
-- state: 0 pending, 1 claimed, 2 done. params is the request body byte for
-- byte (bytea, because jsonb would reorder keys) and is cleared once the
-- request is done.
CREATE TABLE requests (
    batch_seq     bigint NOT NULL,
    request_index bigint NOT NULL,
    custom_id     text NOT NULL,
    params        bytea,
    state         smallint NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),
    owner         text,
    lease_until   timestamptz,
    fence         bigint NOT NULL DEFAULT 0,
    outcome       text
                  CHECK (outcome IN ('succeeded', 'errored', 'canceled', 'expired')),
    result        bytea,
    PRIMARY KEY (batch_seq, request_index)
);

CREATE INDEX requests_open ON requests (batch_seq, request_index) WHERE state < 2;
