// Package batch holds batchd's domain types: message batches, the requests
// inside them, their outcomes, ids and the rules that move a batch through its
// lifecycle. It imports no database driver and no HTTP server code, so the
// store, the engine and the API can all share it.
package batch

import (
	"encoding/json"
	"time"
)

// Status is a batch's processing status as the Message Batches API reports it.
type Status string

// The three processing statuses. A batch starts in_progress, may move to
// canceling when a client cancels it, and always finishes in ended.
const (
	StatusInProgress Status = "in_progress"
	StatusCanceling  Status = "canceling"
	StatusEnded      Status = "ended"
)

// Outcome is the terminal result type of one request.
type Outcome string

// The four outcomes a request can end with.
const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeErrored   Outcome = "errored"
	OutcomeCanceled  Outcome = "canceled"
	OutcomeExpired   Outcome = "expired"
)

// Valid reports whether o is one of the four outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeSucceeded, OutcomeErrored, OutcomeCanceled, OutcomeExpired:
		return true
	}
	return false
}

// Counts is a tally of a batch's requests by outcome.
type Counts struct {
	Processing int64
	Succeeded  int64
	Errored    int64
	Canceled   int64
	Expired    int64
}

// Total returns the sum of all five counters.
func (c Counts) Total() int64 {
	return c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
}

// Batch is a message batch as stored. Optional times are zero when unset.
type Batch struct {
	ID          string
	WorkspaceID string
	Status      Status

	// RequestCount is the number of requests in the batch, fixed at create.
	RequestCount int64

	// Final holds the outcome counts recorded when the batch ended. It is zero
	// while the batch runs.
	Final Counts

	CreatedAt         time.Time
	ExpiresAt         time.Time
	EndedAt           time.Time
	CancelInitiatedAt time.Time
	ArchivedAt        time.Time

	// Betas are the anthropic-beta values sent with create, passed on to an
	// Anthropic backend with each request.
	Betas []string
}

// RequestCounts returns the counts the API reports. As the Message Batches API
// documents, every request stays in processing until the whole batch ends, and
// only then are the outcome counters filled in.
func (b Batch) RequestCounts() Counts {
	if b.Status != StatusEnded {
		return Counts{Processing: b.RequestCount}
	}
	return b.Final
}

// Archived reports whether the batch's results have been removed by retention.
func (b Batch) Archived() bool {
	return !b.ArchivedAt.IsZero()
}

// NewRequest is one entry of a create call.
type NewRequest struct {
	CustomID string
	// Params is the Messages API request body exactly as the client sent it.
	Params json.RawMessage
}

// Request is a request claimed for execution by an engine.
type Request struct {
	BatchID  string
	Index    int64
	CustomID string
	Params   json.RawMessage

	// Betas are the anthropic-beta values of the batch. The store leaves them
	// empty; the engine fills them in from the batch.
	Betas []string

	// Fence is the claim's fencing token. A result is recorded only when the
	// request is still claimed by the same owner under the same token, so a
	// node whose lease ran out cannot record a second result.
	Fence int64
}

// Result is the terminal outcome of one claimed request.
type Result struct {
	BatchID string
	Index   int64
	Fence   int64
	Outcome Outcome

	// Body is the Message object for succeeded, the error envelope for errored,
	// and empty for canceled and expired.
	Body json.RawMessage
}
