// Package storetest is the conformance suite that every [store.Store]
// implementation must pass. An implementation's tests call [Run] with a
// function that opens a new, empty store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// OpenFunc opens a new, empty store for one test. The suite closes it.
type OpenFunc func(t *testing.T) store.Store

// Run runs every conformance test against stores made by open.
func Run(t *testing.T, open OpenFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"KeyPutGet", testKeyPutGet},
		{"CreateAndGet", testCreateAndGet},
		{"CreateFailureLeavesNothing", testCreateFailureLeavesNothing},
		{"CreateEmpty", testCreateEmpty},
		{"ListOrderAndCursors", testListOrderAndCursors},
		{"ListWorkspaceScope", testListWorkspaceScope},
		{"ListRowsStayApart", testListRowsStayApart},
		{"ListSeesChanges", testListSeesChanges},
		{"CancelTransitions", testCancelTransitions},
		{"DeleteOnlyEnded", testDeleteOnlyEnded},
		{"ClaimAndFinish", testClaimAndFinish},
		{"FinishDuplicateResults", testFinishDuplicateResults},
		{"LeaseExpiryFencing", testLeaseExpiryFencing},
		{"EndUnclaimed", testEndUnclaimed},
		{"EndCountsOutcomes", testEndCountsOutcomes},
		{"ResultsOrderAndState", testResultsOrderAndState},
		{"ArchiveRemovesResults", testArchiveRemovesResults},
		{"ConcurrentClaimsDisjoint", testConcurrentClaimsDisjoint},
		{"IdempotentCreate", testIdempotentCreate},
		{"ExtendLeases", testExtendLeases},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// fixture creates batches with increasing creation times.
type fixture struct {
	t   *testing.T
	s   store.Store
	mu  sync.Mutex
	now time.Time
}

func newFixture(t *testing.T, s store.Store) *fixture {
	return &fixture{t: t, s: s, now: epoch}
}

func requestsOf(n int) iter.Seq2[batch.NewRequest, error] {
	return func(yield func(batch.NewRequest, error) bool) {
		for i := range n {
			params := fmt.Sprintf(`{"model":"m","max_tokens":%d,"messages":[]}`, i+1)
			req := batch.NewRequest{CustomID: fmt.Sprintf("req-%d", i), Params: json.RawMessage(params)}
			if !yield(req, nil) {
				return
			}
		}
	}
}

func (f *fixture) newBatch(workspace string) func(int64) batch.Batch {
	return func(int64) batch.Batch {
		f.mu.Lock()
		f.now = f.now.Add(time.Millisecond)
		created := f.now
		f.mu.Unlock()

		return batch.Batch{
			ID:          batch.NewBatchID(created),
			WorkspaceID: workspace,
			Status:      batch.StatusInProgress,
			CreatedAt:   created,
			ExpiresAt:   created.Add(24 * time.Hour),
			Betas:       []string{"message-batches-2024-09-24", "output-128k-2025-02-19"},
		}
	}
}

func (f *fixture) create(workspace string, n int) batch.Batch {
	f.t.Helper()
	b, err := f.s.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requestsOf(n),
		NewBatch: f.newBatch(workspace),
	})
	if err != nil {
		f.t.Fatalf("BatchCreate: %v", err)
	}
	return b
}

// finishAll claims and finishes every request of b as succeeded, then ends b.
func (f *fixture) finishAll(b batch.Batch) {
	f.t.Helper()
	ctx := context.Background()
	for {
		reqs := f.claim(b.ID, "finisher", 1000, f.now)
		if len(reqs) == 0 {
			break
		}
		f.finish("finisher", reqs, batch.OutcomeSucceeded)
	}
	f.end(b.ID, true)
	_ = ctx
}

func (f *fixture) claim(batchID, owner string, limit int, now time.Time) []batch.Request {
	f.t.Helper()
	reqs, err := f.s.RequestClaim(context.Background(), store.RequestClaimParams{
		BatchID: batchID, Owner: owner, Limit: limit, Now: now, LeaseUntil: now.Add(time.Minute),
	})
	if err != nil {
		f.t.Fatalf("RequestClaim: %v", err)
	}
	return reqs
}

func (f *fixture) finish(owner string, reqs []batch.Request, outcome batch.Outcome) int {
	f.t.Helper()
	results := make([]batch.Result, len(reqs))
	for i, req := range reqs {
		results[i] = batch.Result{
			BatchID: req.BatchID, Index: req.Index, Fence: req.Fence, Outcome: outcome,
			Body: json.RawMessage(fmt.Sprintf(`{"n":%d,"owner":%q}`, req.Index, owner)),
		}
	}
	n, err := f.s.RequestFinish(context.Background(), store.RequestFinishParams{
		Owner: owner, Results: results,
	})
	if err != nil {
		f.t.Fatalf("RequestFinish: %v", err)
	}
	return n
}

func (f *fixture) end(batchID string, want bool) {
	f.t.Helper()
	ended, err := f.s.BatchEnd(context.Background(), store.BatchEndParams{
		ID: batchID, Now: f.now.Add(time.Second),
	})
	if err != nil {
		f.t.Fatalf("BatchEnd: %v", err)
	}
	if ended != want {
		f.t.Fatalf("BatchEnd(%s) = %v, want %v", batchID, ended, want)
	}
}

func (f *fixture) get(workspace, id string) (batch.Batch, error) {
	return f.s.BatchGet(context.Background(), store.BatchGetParams{WorkspaceID: workspace, ID: id})
}

func (f *fixture) results(workspace, id string) ([]string, error) {
	var lines []string
	err := f.s.ResultList(context.Background(),
		store.ResultListParams{WorkspaceID: workspace, BatchID: id},
		func(customID string, outcome batch.Outcome, body []byte) error {
			lines = append(lines, string(batch.AppendResultLine(nil, customID, outcome, body)))
			return nil
		})
	return lines, err
}

func testKeyPutGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.KeyGet(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("KeyGet(missing) error = %v, want ErrNotFound", err)
	}

	err := s.KeyPut(ctx, store.KeyPutParams{Hash: "h1", WorkspaceID: "wrkspc_a", CreatedAt: epoch})
	if err != nil {
		t.Fatalf("KeyPut: %v", err)
	}
	err = s.KeyPut(ctx, store.KeyPutParams{Hash: "h1", WorkspaceID: "wrkspc_b", CreatedAt: epoch})
	if err != nil {
		t.Fatalf("KeyPut again: %v", err)
	}

	key, err := s.KeyGet(ctx, "h1")
	if err != nil {
		t.Fatalf("KeyGet: %v", err)
	}
	if key.WorkspaceID != "wrkspc_b" {
		t.Errorf("workspace = %q, want wrkspc_b", key.WorkspaceID)
	}
	n, err := s.KeyCount(ctx)
	if err != nil {
		t.Fatalf("KeyCount: %v", err)
	}
	if n != 1 {
		t.Errorf("KeyCount = %d, want 1", n)
	}
}

func testCreateAndGet(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	created := f.create("wrkspc_a", 3)

	got, err := f.get("wrkspc_a", created.ID)
	if err != nil {
		t.Fatalf("BatchGet: %v", err)
	}
	if got.ID != created.ID || got.WorkspaceID != "wrkspc_a" {
		t.Errorf("got id %s workspace %s, want %s wrkspc_a", got.ID, got.WorkspaceID, created.ID)
	}
	if got.Status != batch.StatusInProgress {
		t.Errorf("status = %s, want in_progress", got.Status)
	}
	if got.RequestCount != 3 {
		t.Errorf("request count = %d, want 3", got.RequestCount)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || !got.ExpiresAt.Equal(created.ExpiresAt) {
		t.Errorf("times = %v / %v, want %v / %v", got.CreatedAt, got.ExpiresAt,
			created.CreatedAt, created.ExpiresAt)
	}
	if !got.EndedAt.IsZero() || !got.CancelInitiatedAt.IsZero() || !got.ArchivedAt.IsZero() {
		t.Errorf("optional times set on a new batch: %+v", got)
	}
	if len(got.Betas) != 2 || got.Betas[1] != "output-128k-2025-02-19" {
		t.Errorf("betas = %v", got.Betas)
	}

	if _, err := f.get("wrkspc_other", created.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("BatchGet from another workspace: error = %v, want ErrNotFound", err)
	}
	if _, err := f.get("", created.ID); err != nil {
		t.Errorf("BatchGet with any workspace: %v", err)
	}

	reqs := f.claim(created.ID, "o", 10, epoch)
	if len(reqs) != 3 {
		t.Fatalf("claimed %d requests, want 3", len(reqs))
	}
	want := `{"model":"m","max_tokens":2,"messages":[]}`
	if reqs[1].CustomID != "req-1" || string(reqs[1].Params) != want {
		t.Errorf("request 1 = %s %s, want req-1 %s", reqs[1].CustomID, reqs[1].Params, want)
	}
}

func testCreateFailureLeavesNothing(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	failure := errors.New("request 4500 is invalid")
	requests := func(yield func(batch.NewRequest, error) bool) {
		for req := range requestsOf(4500) {
			if !yield(req, nil) {
				return
			}
		}
		yield(batch.NewRequest{}, failure)
	}

	called := false
	_, err := s.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requests,
		NewBatch: func(n int64) batch.Batch { called = true; return f.newBatch("w")(n) },
	})
	if !errors.Is(err, failure) {
		t.Fatalf("BatchCreate error = %v, want %v", err, failure)
	}
	if called {
		t.Error("NewBatch was called for a failed create")
	}

	page, err := s.BatchList(context.Background(), store.BatchListParams{WorkspaceID: "w", Limit: 10})
	if err != nil {
		t.Fatalf("BatchList: %v", err)
	}
	if len(page.Batches) != 0 {
		t.Errorf("list after a failed create has %d batches, want 0", len(page.Batches))
	}
	active, err := s.BatchListActive(context.Background())
	if err != nil {
		t.Fatalf("BatchListActive: %v", err)
	}
	if len(active) != 0 {
		t.Errorf("%d active batches after a failed create, want 0", len(active))
	}

	// A later batch is whole and unaffected.
	b := f.create("w", 2)
	if reqs := f.claim(b.ID, "o", 100, epoch); len(reqs) != 2 {
		t.Errorf("claimed %d requests of the next batch, want 2", len(reqs))
	}
}

func testCreateEmpty(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	_, err := s.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requestsOf(0), NewBatch: f.newBatch("w"),
	})
	if !errors.Is(err, batch.ErrInvalidRequest) {
		t.Fatalf("BatchCreate with no requests: error = %v, want ErrInvalidRequest", err)
	}
}

func ids(batches []batch.Batch) []string {
	out := make([]string, len(batches))
	for i, b := range batches {
		out[i] = b.ID
	}
	return out
}

func testListOrderAndCursors(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	var all []string // newest first
	for range 7 {
		all = append([]string{f.create("w", 1).ID}, all...)
	}

	list := func(after, before string, limit int) store.BatchPage {
		t.Helper()
		page, err := s.BatchList(context.Background(), store.BatchListParams{
			WorkspaceID: "w", AfterID: after, BeforeID: before, Limit: limit,
		})
		if err != nil {
			t.Fatalf("BatchList: %v", err)
		}
		return page
	}
	check := func(name string, page store.BatchPage, want []string, hasMore bool) {
		t.Helper()
		got := ids(page.Batches)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: ids = %v, want %v", name, got, want)
		}
		if page.HasMore != hasMore {
			t.Errorf("%s: has_more = %v, want %v", name, page.HasMore, hasMore)
		}
	}

	check("first page", list("", "", 3), all[0:3], true)
	check("all", list("", "", 7), all, false)
	check("after", list(all[2], "", 3), all[3:6], true)
	check("after to end", list(all[3], "", 3), all[4:7], false)
	check("before", list("", all[5], 3), all[2:5], true)
	check("before to start", list("", all[3], 3), all[0:3], false)
	// Both cursors: the window strictly between them, filled from before_id.
	check("both", list(all[1], all[6], 3), all[3:6], true)
	check("both whole window", list(all[1], all[6], 10), all[2:6], false)
	check("both crossed", list(all[6], all[1], 10), nil, false)
	check("unknown cursor above all", list("", "msgbatch_zzzz", 5), nil, false)
	check("unknown cursor below all", list("after_id", "", 5), nil, false)
	check("cursor past the end", list(all[6], "", 5), nil, false)
}

func testListWorkspaceScope(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	a := f.create("wrkspc_a", 1)
	f.create("wrkspc_b", 1)

	page, err := s.BatchList(context.Background(), store.BatchListParams{
		WorkspaceID: "wrkspc_a", Limit: 10,
	})
	if err != nil {
		t.Fatalf("BatchList: %v", err)
	}
	if got := ids(page.Batches); len(got) != 1 || got[0] != a.ID {
		t.Errorf("workspace a lists %v, want [%s]", got, a.ID)
	}
}

func testCancelTransitions(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	b := f.create("w", 2)

	cancel := func(workspace string) (batch.Batch, error) {
		return s.BatchCancel(ctx, store.BatchCancelParams{
			WorkspaceID: workspace, ID: b.ID, Now: epoch.Add(time.Hour),
		})
	}

	if _, err := cancel("other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cancel from another workspace: error = %v, want ErrNotFound", err)
	}

	got, err := cancel("w")
	if err != nil {
		t.Fatalf("BatchCancel: %v", err)
	}
	if got.Status != batch.StatusCanceling || !got.CancelInitiatedAt.Equal(epoch.Add(time.Hour)) {
		t.Errorf("after cancel: status %s, cancel time %v", got.Status, got.CancelInitiatedAt)
	}

	again, err := s.BatchCancel(ctx, store.BatchCancelParams{
		WorkspaceID: "w", ID: b.ID, Now: epoch.Add(2 * time.Hour),
	})
	if err != nil {
		t.Fatalf("second BatchCancel: %v", err)
	}
	if !again.CancelInitiatedAt.Equal(epoch.Add(time.Hour)) {
		t.Errorf("second cancel moved cancel time to %v", again.CancelInitiatedAt)
	}

	if _, err := s.RequestEndUnclaimed(ctx, store.RequestEndUnclaimedParams{
		BatchID: b.ID, Outcome: batch.OutcomeCanceled, Now: epoch,
	}); err != nil {
		t.Fatalf("RequestEndUnclaimed: %v", err)
	}
	f.end(b.ID, true)

	if _, err := cancel("w"); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("cancel of an ended batch: error = %v, want ErrWrongState", err)
	}
}

func testDeleteOnlyEnded(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	b := f.create("w", 2)

	del := func(workspace string) error {
		return s.BatchDelete(ctx, store.BatchDeleteParams{WorkspaceID: workspace, ID: b.ID})
	}
	if err := del("w"); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("delete of a running batch: error = %v, want ErrWrongState", err)
	}

	f.finishAll(b)
	if err := del("other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete from another workspace: error = %v, want ErrNotFound", err)
	}
	if err := del("w"); err != nil {
		t.Fatalf("BatchDelete: %v", err)
	}
	if _, err := f.get("w", b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete: error = %v, want ErrNotFound", err)
	}
	if err := del("w"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: error = %v, want ErrNotFound", err)
	}
	if _, err := f.results("w", b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("results after delete: error = %v, want ErrNotFound", err)
	}
}

func testClaimAndFinish(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	b := f.create("w", 5)

	first := f.claim(b.ID, "a", 3, epoch)
	if len(first) != 3 {
		t.Fatalf("claimed %d, want 3", len(first))
	}
	second := f.claim(b.ID, "b", 10, epoch)
	if len(second) != 2 {
		t.Fatalf("second claim got %d, want the 2 left", len(second))
	}
	if more := f.claim(b.ID, "c", 10, epoch); len(more) != 0 {
		t.Fatalf("third claim got %d, want 0 while leases live", len(more))
	}

	// A result from an owner that does not hold the claim is dropped.
	if n := f.finish("b", first[:1], batch.OutcomeSucceeded); n != 0 {
		t.Errorf("finish by the wrong owner recorded %d, want 0", n)
	}
	if n := f.finish("a", first, batch.OutcomeSucceeded); n != 3 {
		t.Errorf("finish recorded %d, want 3", n)
	}
	if n := f.finish("a", first, batch.OutcomeErrored); n != 0 {
		t.Errorf("second finish recorded %d, want 0", n)
	}

	f.end(b.ID, false)
	f.finish("b", second, batch.OutcomeErrored)
	f.end(b.ID, true)
	f.end(b.ID, false)
}

// Several results for one request in one call are applied as if one by one:
// the first whose fence matches is recorded and the rest are dropped.
func testFinishDuplicateResults(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	b := f.create("w", 1)
	req := f.claim(b.ID, "a", 1, epoch)[0]

	result := func(fence int64, outcome batch.Outcome, try int) batch.Result {
		return batch.Result{
			BatchID: b.ID, Index: req.Index, Fence: fence, Outcome: outcome,
			Body: json.RawMessage(fmt.Sprintf(`{"try":%d}`, try)),
		}
	}
	n, err := s.RequestFinish(context.Background(), store.RequestFinishParams{
		Owner: "a",
		Results: []batch.Result{
			result(req.Fence-1, batch.OutcomeErrored, 0), // stale token
			result(req.Fence, batch.OutcomeSucceeded, 1),
			result(req.Fence, batch.OutcomeErrored, 2),
		},
	})
	if err != nil {
		t.Fatalf("RequestFinish: %v", err)
	}
	if n != 1 {
		t.Errorf("RequestFinish recorded %d results, want 1", n)
	}
	f.end(b.ID, true)

	lines, err := f.results("w", b.ID)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	want := `{"custom_id":"req-0","result":{"type":"succeeded","message":{"try":1}}}`
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("results = %q, want [%s]", lines, want)
	}
}

func testLeaseExpiryFencing(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	b := f.create("w", 1)

	old := f.claim(b.ID, "dead", 1, epoch)
	if len(old) != 1 {
		t.Fatalf("claimed %d, want 1", len(old))
	}

	// After the lease ends another owner takes the request with a new token.
	later := epoch.Add(2 * time.Minute)
	taken := f.claim(b.ID, "alive", 1, later)
	if len(taken) != 1 {
		t.Fatalf("reclaim got %d, want 1", len(taken))
	}
	if taken[0].Fence <= old[0].Fence {
		t.Errorf("new fence %d is not above old fence %d", taken[0].Fence, old[0].Fence)
	}

	if n := f.finish("dead", old, batch.OutcomeSucceeded); n != 0 {
		t.Errorf("the expired owner recorded %d results, want 0", n)
	}
	if n := f.finish("alive", taken, batch.OutcomeSucceeded); n != 1 {
		t.Errorf("the new owner recorded %d results, want 1", n)
	}
	f.end(b.ID, true)

	lines, err := f.results("w", b.ID)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	want := `{"custom_id":"req-0","result":{"type":"succeeded","message":{"n":0,"owner":"alive"}}}`
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("results = %q, want [%s]", lines, want)
	}
}

func testEndUnclaimed(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	b := f.create("w", 4)

	running := f.claim(b.ID, "a", 1, epoch)                  // lease lives
	stale := f.claim(b.ID, "dead", 1, epoch.Add(-time.Hour)) // lease ended

	n, err := s.RequestEndUnclaimed(ctx, store.RequestEndUnclaimedParams{
		BatchID: b.ID, Outcome: batch.OutcomeCanceled, Now: epoch,
	})
	if err != nil {
		t.Fatalf("RequestEndUnclaimed: %v", err)
	}
	if n != 3 {
		t.Errorf("ended %d requests, want 3 (two pending, one stale)", n)
	}
	if got := f.finish("dead", stale, batch.OutcomeSucceeded); got != 0 {
		t.Errorf("stale owner recorded %d, want 0", got)
	}

	f.end(b.ID, false)
	f.finish("a", running, batch.OutcomeSucceeded)
	f.end(b.ID, true)

	got, err := f.get("w", b.ID)
	if err != nil {
		t.Fatalf("BatchGet: %v", err)
	}
	want := batch.Counts{Succeeded: 1, Canceled: 3}
	if got.RequestCounts() != want {
		t.Errorf("counts = %+v, want %+v", got.RequestCounts(), want)
	}
}

func testEndCountsOutcomes(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	b := f.create("w", 6)

	reqs := f.claim(b.ID, "a", 3, epoch)
	f.finish("a", reqs[:2], batch.OutcomeSucceeded)
	f.finish("a", reqs[2:], batch.OutcomeErrored)
	if _, err := s.RequestEndUnclaimed(ctx, store.RequestEndUnclaimedParams{
		BatchID: b.ID, Outcome: batch.OutcomeExpired, Now: epoch,
	}); err != nil {
		t.Fatalf("RequestEndUnclaimed: %v", err)
	}

	before, _ := f.get("w", b.ID)
	if before.RequestCounts() != (batch.Counts{Processing: 6}) {
		t.Errorf("counts before end = %+v, want all processing", before.RequestCounts())
	}

	f.end(b.ID, true)
	got, err := f.get("w", b.ID)
	if err != nil {
		t.Fatalf("BatchGet: %v", err)
	}
	if got.Status != batch.StatusEnded || got.EndedAt.IsZero() {
		t.Errorf("status %s ended_at %v after end", got.Status, got.EndedAt)
	}
	want := batch.Counts{Succeeded: 2, Errored: 1, Expired: 3}
	if got.RequestCounts() != want {
		t.Errorf("counts = %+v, want %+v", got.RequestCounts(), want)
	}
	if got.RequestCounts().Total() != 6 {
		t.Errorf("counts sum to %d, want 6", got.RequestCounts().Total())
	}
}

func testResultsOrderAndState(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	b := f.create("w", 3)

	if _, err := f.results("w", b.ID); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("results before end: error = %v, want ErrWrongState", err)
	}

	reqs := f.claim(b.ID, "a", 3, epoch)
	// Finish in reverse order: results still come in submission order.
	f.finish("a", reqs[2:], batch.OutcomeSucceeded)
	f.finish("a", reqs[1:2], batch.OutcomeErrored)
	f.finish("a", reqs[:1], batch.OutcomeSucceeded)
	f.end(b.ID, true)

	if _, err := f.results("other", b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("results from another workspace: error = %v, want ErrNotFound", err)
	}
	lines, err := f.results("w", b.ID)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	want := []string{
		`{"custom_id":"req-0","result":{"type":"succeeded","message":{"n":0,"owner":"a"}}}`,
		`{"custom_id":"req-1","result":{"type":"errored","error":{"n":1,"owner":"a"}}}`,
		`{"custom_id":"req-2","result":{"type":"succeeded","message":{"n":2,"owner":"a"}}}`,
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("results =\n%s\nwant\n%s", lines, want)
	}
}

func testArchiveRemovesResults(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	old := f.create("w", 2)
	running := f.create("w", 1)
	f.finishAll(old)
	young := f.create("w", 1)
	f.finishAll(young)

	cutoff := young.CreatedAt // archives batches created before it
	archivedAt := epoch.Add(29 * 24 * time.Hour)
	n, err := s.BatchArchive(ctx, store.BatchArchiveParams{CreatedBefore: cutoff, Now: archivedAt})
	if err != nil {
		t.Fatalf("BatchArchive: %v", err)
	}
	if n != 1 {
		t.Errorf("archived %d batches, want 1", n)
	}

	got, err := f.get("w", old.ID)
	if err != nil {
		t.Fatalf("BatchGet after archive: %v", err)
	}
	if !got.ArchivedAt.Equal(archivedAt) {
		t.Errorf("archived_at = %v, want %v", got.ArchivedAt, archivedAt)
	}
	if got.RequestCounts().Succeeded != 2 {
		t.Errorf("counts after archive = %+v, want 2 succeeded kept", got.RequestCounts())
	}
	if _, err := f.results("w", old.ID); !errors.Is(err, store.ErrArchived) {
		t.Errorf("results after archive: error = %v, want ErrArchived", err)
	}
	if lines, err := f.results("w", young.ID); err != nil || len(lines) != 1 {
		t.Errorf("results of the young batch = %d lines, %v; want 1 line", len(lines), err)
	}
	if r, _ := f.get("w", running.ID); r.Archived() {
		t.Error("a running batch was archived")
	}

	again, err := s.BatchArchive(ctx, store.BatchArchiveParams{CreatedBefore: cutoff, Now: archivedAt})
	if err != nil || again != 0 {
		t.Errorf("second BatchArchive = %d, %v; want 0, nil", again, err)
	}
}

func testConcurrentClaimsDisjoint(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	const total = 3000
	b := f.create("w", total)

	var (
		mu    sync.Mutex
		seen  = map[int64]int{}
		wg    sync.WaitGroup
		errCh = make(chan error, 8)
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("worker-%d", w)
			for range total { // bounded: each round claims at least one or stops
				reqs, err := s.RequestClaim(context.Background(), store.RequestClaimParams{
					BatchID: b.ID, Owner: owner, Limit: 50, Now: epoch, LeaseUntil: epoch.Add(time.Hour),
				})
				if err != nil {
					errCh <- err
					return
				}
				if len(reqs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range reqs {
					seen[r.Index]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatalf("RequestClaim: %v", err)
	}

	if len(seen) != total {
		t.Errorf("claimed %d distinct requests, want %d", len(seen), total)
	}
	for index, n := range seen {
		if n != 1 {
			t.Errorf("request %d claimed %d times", index, n)
		}
	}
}

func testIdempotentCreate(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	create := func(workspace, key string) (batch.Batch, error) {
		return s.BatchCreate(ctx, store.BatchCreateParams{
			Requests: requestsOf(3), NewBatch: f.newBatch(workspace),
			WorkspaceID: workspace, IdempotencyKey: key,
		})
	}

	// Concurrent creates with one key store one batch and all return it.
	const callers = 8
	ids := make(chan string, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := create("w", "key-1")
			if err != nil {
				t.Errorf("BatchCreate: %v", err)
				return
			}
			ids <- b.ID
		}()
	}
	wg.Wait()
	close(ids)

	first := ""
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Errorf("creates with one key returned %s and %s", first, id)
		}
	}

	page, err := s.BatchList(ctx, store.BatchListParams{WorkspaceID: "w", Limit: 100})
	if err != nil {
		t.Fatalf("BatchList: %v", err)
	}
	if len(page.Batches) != 1 {
		t.Errorf("%d batches stored for one key, want 1", len(page.Batches))
	}
	if reqs := f.claim(first, "o", 100, epoch); len(reqs) != 3 {
		t.Errorf("the batch has %d requests, want 3", len(reqs))
	}

	// Another key, another workspace or no key each make a new batch.
	for _, c := range []struct{ workspace, key string }{{"w", "key-2"}, {"v", "key-1"}, {"w", ""}, {"w", ""}} {
		b, err := create(c.workspace, c.key)
		if err != nil {
			t.Fatalf("BatchCreate: %v", err)
		}
		if b.ID == first {
			t.Errorf("workspace %q key %q returned the batch of key-1", c.workspace, c.key)
		}
	}
}

func testExtendLeases(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	b := f.create("w", 3)

	mine := f.claim(b.ID, "a", 2, epoch) // leases end at epoch + 1m
	f.claim(b.ID, "other", 1, epoch)

	n, err := s.RequestExtendLeases(ctx, store.RequestExtendLeasesParams{
		Owner: "a", LeaseUntil: epoch.Add(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("RequestExtendLeases: %v", err)
	}
	if n != 2 {
		t.Errorf("extended %d leases, want 2", n)
	}

	// Five minutes on, only the other owner's request can be taken over.
	later := epoch.Add(5 * time.Minute)
	taken := f.claim(b.ID, "thief", 10, later)
	if len(taken) != 1 {
		t.Fatalf("took over %d requests, want 1", len(taken))
	}
	if got := f.finish("a", mine, batch.OutcomeSucceeded); got != 2 {
		t.Errorf("owner of extended leases recorded %d, want 2", got)
	}
}

// testListRowsStayApart lists batches whose betas differ in number and
// content, and checks that each listed batch keeps its own: a store that
// reuses scan targets from row to row must not let rows share memory.
func testListRowsStayApart(t *testing.T, s store.Store) {
	ctx := context.Background()
	betas := [][]string{{"a-1", "a-2", "a-3"}, nil, {"c-1"}, {"d-1", "d-2"}}
	want := map[string][]string{}
	for i, bs := range betas {
		created := epoch.Add(time.Duration(i) * time.Second)
		b, err := s.BatchCreate(ctx, store.BatchCreateParams{
			Requests: requestsOf(1),
			NewBatch: func(int64) batch.Batch {
				return batch.Batch{ID: batch.NewBatchID(created), WorkspaceID: "wrkspc_rows",
					Status: batch.StatusInProgress, CreatedAt: created,
					ExpiresAt: created.Add(time.Hour), Betas: bs}
			},
		})
		if err != nil {
			t.Fatalf("BatchCreate: %v", err)
		}
		want[b.ID] = bs
	}

	page, err := s.BatchList(ctx, store.BatchListParams{WorkspaceID: "wrkspc_rows", Limit: 10})
	if err != nil {
		t.Fatalf("BatchList: %v", err)
	}
	if len(page.Batches) != len(betas) {
		t.Fatalf("listed %d batches, want %d", len(page.Batches), len(betas))
	}
	for _, b := range page.Batches {
		if !slices.Equal(b.Betas, want[b.ID]) {
			t.Errorf("batch %s betas = %v, want %v", b.ID, b.Betas, want[b.ID])
		}
	}
}

// testListSeesChanges checks that list and get return every batch as the
// last cancel, end, archive or delete left it, for stores that serve them
// from a copy in memory.
func testListSeesChanges(t *testing.T, s store.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	deleted := f.create("w", 1)
	canceled := f.create("w", 2)
	old := f.create("w", 2)
	older := f.create("w", 1)
	young := f.create("w", 1)
	other := f.create("other", 1)

	cancelAt := epoch.Add(time.Hour)
	if _, err := s.BatchCancel(ctx, store.BatchCancelParams{
		WorkspaceID: "w", ID: canceled.ID, Now: cancelAt,
	}); err != nil {
		t.Fatalf("BatchCancel: %v", err)
	}
	f.finishAll(old)
	f.finishAll(older)
	archivedAt := epoch.Add(29 * 24 * time.Hour)
	if _, err := s.BatchArchive(ctx, store.BatchArchiveParams{
		CreatedBefore: young.CreatedAt, Now: archivedAt,
	}); err != nil {
		t.Fatalf("BatchArchive: %v", err)
	}
	f.finishAll(deleted)
	err := s.BatchDelete(ctx, store.BatchDeleteParams{WorkspaceID: "w", ID: deleted.ID})
	if err != nil {
		t.Fatalf("BatchDelete: %v", err)
	}

	page, err := s.BatchList(ctx, store.BatchListParams{WorkspaceID: "w", Limit: 10})
	if err != nil {
		t.Fatalf("BatchList: %v", err)
	}
	want := []string{young.ID, older.ID, old.ID, canceled.ID}
	if got := ids(page.Batches); !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}

	checkListed(t, page.Batches[0], batch.StatusInProgress, time.Time{}, time.Time{})
	checkListed(t, page.Batches[1], batch.StatusEnded, time.Time{}, archivedAt)
	checkListed(t, page.Batches[2], batch.StatusEnded, time.Time{}, archivedAt)
	checkListed(t, page.Batches[3], batch.StatusCanceling, cancelAt, time.Time{})
	if got := page.Batches[2].RequestCounts().Succeeded; got != 2 {
		t.Errorf("listed ended batch: %d succeeded, want 2", got)
	}
	if page.Batches[2].EndedAt.IsZero() {
		t.Error("listed ended batch has no ended_at")
	}

	for _, listed := range page.Batches {
		got, err := f.get("w", listed.ID)
		if err != nil {
			t.Fatalf("BatchGet(%s): %v", listed.ID, err)
		}
		if describeBatch(got) != describeBatch(listed) {
			t.Errorf("get and list differ:\n get  %s\n list %s",
				describeBatch(got), describeBatch(listed))
		}
	}
	if _, err := f.get("w", deleted.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get of the deleted batch: error = %v, want ErrNotFound", err)
	}
	if _, err := f.get("w", other.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get of another workspace's batch: error = %v, want ErrNotFound", err)
	}

	var paged []batch.Batch
	after := ""
	for range 10 {
		single, err := s.BatchList(ctx, store.BatchListParams{
			WorkspaceID: "w", AfterID: after, Limit: 1,
		})
		if err != nil {
			t.Fatalf("BatchList: %v", err)
		}
		paged = append(paged, single.Batches...)
		if !single.HasMore {
			break
		}
		after = single.Batches[0].ID
	}
	if len(paged) != len(page.Batches) {
		t.Fatalf("paging by one listed %d batches, want %d", len(paged), len(page.Batches))
	}
	for i := range paged {
		if describeBatch(paged[i]) != describeBatch(page.Batches[i]) {
			t.Errorf("paging by one, batch %d:\n got  %s\n want %s", i,
				describeBatch(paged[i]), describeBatch(page.Batches[i]))
		}
	}
}

func checkListed(t *testing.T, b batch.Batch, status batch.Status,
	cancelAt, archivedAt time.Time) {
	t.Helper()
	if b.Status != status {
		t.Errorf("listed %s: status %s, want %s", b.ID, b.Status, status)
	}
	if !b.CancelInitiatedAt.Equal(cancelAt) {
		t.Errorf("listed %s: cancel_initiated_at %v, want %v", b.ID, b.CancelInitiatedAt,
			cancelAt)
	}
	if !b.ArchivedAt.Equal(archivedAt) {
		t.Errorf("listed %s: archived_at %v, want %v", b.ID, b.ArchivedAt, archivedAt)
	}
}

// describeBatch formats every field of b, times in UTC.
func describeBatch(b batch.Batch) string {
	times := []time.Time{b.CreatedAt, b.ExpiresAt, b.EndedAt, b.CancelInitiatedAt, b.ArchivedAt}
	formatted := make([]string, len(times))
	for i, tm := range times {
		formatted[i] = tm.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s ws=%s %s requests=%d final=%+v times=%v betas=%q",
		b.ID, b.WorkspaceID, b.Status, b.RequestCount, b.Final, formatted, b.Betas)
}
