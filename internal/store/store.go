// Package store defines the storage interface that batchd's API and engine
// use, and the errors it returns. Each implementation lives in a package of
// its own (store/sqlite, store/postgres) and must pass the conformance suite
// in store/storetest.
package store

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/batchd/batchd/internal/batch"
)

// ErrNotFound is returned when a batch or key does not exist, or belongs to
// another workspace. It wraps [batch.ErrNotFound].
var ErrNotFound = fmt.Errorf("store: %w", batch.ErrNotFound)

// ErrArchived is returned for the results of a batch that retention has
// archived. It wraps [ErrNotFound].
var ErrArchived = fmt.Errorf("results archived: %w", ErrNotFound)

// ErrWrongState is returned when an operation does not fit the batch's status:
// cancel of an ended batch, delete or results of a batch that has not ended.
// It wraps [batch.ErrInvalidRequest].
var ErrWrongState = fmt.Errorf("store: wrong batch status: %w", batch.ErrInvalidRequest)

// Store is batchd's persistent state: API keys, batches, the requests inside
// them and their results. Every method is safe for concurrent use.
//
// Methods that take a WorkspaceID treat a batch of another workspace as
// absent and return [ErrNotFound]. An empty WorkspaceID matches every
// workspace; only the engine passes it.
type Store interface {
	// KeyPut stores an API key's hash and its workspace. Storing a hash that
	// exists already moves it to the given workspace.
	KeyPut(ctx context.Context, params KeyPutParams) error

	// KeyGet returns the key with the given hash, or [ErrNotFound].
	KeyGet(ctx context.Context, hash string) (Key, error)

	// KeyCount returns how many keys are stored.
	KeyCount(ctx context.Context) (int, error)

	// BatchCreate stores a batch and all of its requests. It pulls requests
	// from params.Requests and writes them in chunks, so memory stays flat
	// however large the batch. If the sequence yields an error, or anything
	// fails, nothing of the batch remains and the error is returned. The
	// batch becomes visible to every other method, all at once, only when
	// BatchCreate returns it.
	BatchCreate(ctx context.Context, params BatchCreateParams) (batch.Batch, error)

	// BatchGet returns one batch.
	BatchGet(ctx context.Context, params BatchGetParams) (batch.Batch, error)

	// BatchList returns one page of a workspace's batches, newest first.
	BatchList(ctx context.Context, params BatchListParams) (BatchPage, error)

	// BatchListActive returns every batch that is in_progress or canceling,
	// oldest first, for the engine.
	BatchListActive(ctx context.Context) ([]batch.Batch, error)

	// BatchCancel moves an in_progress batch to canceling and records
	// params.Now as its cancel time. A canceling batch is returned unchanged.
	// An ended batch gives [ErrWrongState].
	BatchCancel(ctx context.Context, params BatchCancelParams) (batch.Batch, error)

	// BatchDelete removes an ended batch, its requests and results. A batch
	// that has not ended gives [ErrWrongState].
	BatchDelete(ctx context.Context, params BatchDeleteParams) error

	// BatchEnd ends a batch whose requests all have an outcome: it records
	// the outcome counts, params.Now as ended_at, and status ended. It returns
	// false, changing nothing, while any request lacks an outcome or if the
	// batch has ended already.
	BatchEnd(ctx context.Context, params BatchEndParams) (bool, error)

	// BatchArchive removes the results of every batch created before
	// params.CreatedBefore that has not been archived yet, and records
	// params.Now as its archived_at. Batches that have not ended are left
	// alone. It returns how many batches it archived.
	BatchArchive(ctx context.Context, params BatchArchiveParams) (int, error)

	// RequestClaim leases up to params.Limit requests of one batch to
	// params.Owner until params.LeaseUntil. It takes requests that no one
	// holds and requests whose lease ended before params.Now. Each claim gets
	// a new fencing token.
	RequestClaim(ctx context.Context, params RequestClaimParams) ([]batch.Request, error)

	// RequestFinish records results of claimed requests. A result is recorded
	// only if its request is still claimed by params.Owner under the result's
	// fencing token; other results are dropped. It returns how many were
	// recorded.
	RequestFinish(ctx context.Context, params RequestFinishParams) (int, error)

	// RequestExtendLeases moves the lease end of every request that
	// params.Owner holds to params.LeaseUntil, so that calls running longer
	// than one lease are not taken over by another node. It returns how many
	// leases it extended.
	RequestExtendLeases(ctx context.Context, params RequestExtendLeasesParams) (int, error)

	// RequestEndUnclaimed gives every request of a batch that no live lease
	// holds the outcome params.Outcome (canceled or expired). Requests whose
	// lease ended before params.Now count as unclaimed. It returns how many
	// requests it changed.
	RequestEndUnclaimed(ctx context.Context, params RequestEndUnclaimedParams) (int, error)

	// ResultList calls fn once for every request of an ended batch, in the
	// order the requests were submitted. body is only valid during the call.
	// A batch that has not ended gives [ErrWrongState]; an archived one gives
	// [ErrArchived].
	ResultList(ctx context.Context, params ResultListParams,
		fn func(customID string, outcome batch.Outcome, body []byte) error) error

	// Close releases the store's resources.
	Close() error
}

// Key is a stored API key.
type Key struct {
	Hash        string
	WorkspaceID string
	CreatedAt   time.Time
}

// KeyPutParams are the arguments of [Store.KeyPut].
type KeyPutParams struct {
	Hash        string
	WorkspaceID string
	CreatedAt   time.Time
}

// BatchCreateParams are the arguments of [Store.BatchCreate].
type BatchCreateParams struct {
	// Requests yields the batch's requests in order. It must yield at least
	// one request and stop at the first error.
	Requests iter.Seq2[batch.NewRequest, error]

	// WorkspaceID and IdempotencyKey make the create idempotent when the key
	// is not empty: if the workspace has a batch created with the same key,
	// BatchCreate returns that batch and stores nothing. Concurrent creates
	// with one key store one batch, and all of them return it. A key lasts as
	// long as its batch.
	WorkspaceID    string
	IdempotencyKey string

	// NewBatch returns the batch row to store once every request is written,
	// given their number. It sets the id, workspace and times. The store calls
	// it at the moment the batch becomes visible, so that ids, which sort by
	// time, follow the order in which batches appear.
	NewBatch func(requestCount int64) batch.Batch
}

// BatchGetParams are the arguments of [Store.BatchGet].
type BatchGetParams struct {
	WorkspaceID string
	ID          string
}

// BatchListParams are the arguments of [Store.BatchList]. Order is by id,
// descending. AfterID selects ids below it (older batches); BeforeID selects
// ids above it (newer batches), and the page is then the Limit ids closest to
// BeforeID. With both, the page lies strictly between them and is filled from
// the BeforeID side. Cursors are compared as strings and need not exist.
type BatchListParams struct {
	WorkspaceID string
	AfterID     string
	BeforeID    string
	Limit       int
}

// BatchPage is one page of a list, newest first. HasMore reports whether
// further batches lie beyond the page in the direction of paging.
type BatchPage struct {
	Batches []batch.Batch
	HasMore bool
}

// BatchCancelParams are the arguments of [Store.BatchCancel].
type BatchCancelParams struct {
	WorkspaceID string
	ID          string
	Now         time.Time
}

// BatchDeleteParams are the arguments of [Store.BatchDelete].
type BatchDeleteParams struct {
	WorkspaceID string
	ID          string
}

// BatchEndParams are the arguments of [Store.BatchEnd].
type BatchEndParams struct {
	ID  string
	Now time.Time
}

// BatchArchiveParams are the arguments of [Store.BatchArchive].
type BatchArchiveParams struct {
	CreatedBefore time.Time
	Now           time.Time
}

// RequestClaimParams are the arguments of [Store.RequestClaim].
type RequestClaimParams struct {
	BatchID    string
	Owner      string
	Limit      int
	Now        time.Time
	LeaseUntil time.Time
}

// RequestFinishParams are the arguments of [Store.RequestFinish].
type RequestFinishParams struct {
	Owner   string
	Results []batch.Result
}

// RequestExtendLeasesParams are the arguments of [Store.RequestExtendLeases].
type RequestExtendLeasesParams struct {
	Owner      string
	LeaseUntil time.Time
}

// RequestEndUnclaimedParams are the arguments of [Store.RequestEndUnclaimed].
type RequestEndUnclaimedParams struct {
	BatchID string
	Outcome batch.Outcome
	Now     time.Time
}

// ResultListParams are the arguments of [Store.ResultList].
type ResultListParams struct {
	WorkspaceID string
	BatchID     string
}
