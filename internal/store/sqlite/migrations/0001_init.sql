-- API keys, stored as the SHA-256 hash of the key.
CREATE TABLE api_keys (
    hash         TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Batches that are being written. A create allocates its seq here, writes its
-- requests in chunks, then moves to batches in one transaction. AUTOINCREMENT
-- keeps a seq from ever being handed out twice.
CREATE TABLE batch_staging (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at INTEGER NOT NULL
);

-- Times are microseconds since the Unix epoch, UTC.
CREATE TABLE batches (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    workspace_id        TEXT NOT NULL,
    status              TEXT NOT NULL,
    request_count       INTEGER NOT NULL,
    succeeded           INTEGER NOT NULL DEFAULT 0,
    errored             INTEGER NOT NULL DEFAULT 0,
    canceled            INTEGER NOT NULL DEFAULT 0,
    expired             INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    ended_at            INTEGER,
    cancel_initiated_at INTEGER,
    archived_at         INTEGER,
    betas               TEXT NOT NULL DEFAULT ''
);

CREATE UNIQUE INDEX batches_workspace_id ON batches (workspace_id, id);
CREATE INDEX batches_active ON batches (seq) WHERE status <> 'ended';
CREATE INDEX batches_unarchived ON batches (created_at) WHERE archived_at IS NULL;

-- One row per request. rid is seq * 2^20 + index, so a batch's requests are
-- one contiguous range of the primary key. state: 0 pending, 1 claimed, 2 done.
CREATE TABLE requests (
    rid         INTEGER PRIMARY KEY,
    custom_id   TEXT NOT NULL,
    params      BLOB,
    state       INTEGER NOT NULL DEFAULT 0,
    owner       TEXT,
    lease_until INTEGER,
    fence       INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT,
    result      BLOB
);

CREATE INDEX requests_open ON requests (state, rid) WHERE state < 2;
