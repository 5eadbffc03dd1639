package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// diffHarness drives one database file through a store with a list cache and
// checks every read against a second store on the same file without one.
type diffHarness struct {
	t      *testing.T
	ctx    context.Context
	path   string
	rng    *rand.Rand
	cached *sqlite.Store
	plain  *sqlite.Store
	size   int

	clock      time.Time
	ids        []string          // every id ever created, in creation order
	workspaces map[string]string // id to workspace, for ids that were created
	live       map[string]bool   // ids of batches not deleted
	log        []string          // operations so far, for failure messages
}

// randomTestBudget returns how long a random test may run: full unless -short.
func randomTestBudget(full time.Duration) time.Duration {
	if testing.Short() {
		return full / 10
	}
	return full
}

var testWorkspaces = []string{"ws_a", "ws_b", "ws_c"}

func newDiffHarness(t *testing.T, seed uint64, size int) *diffHarness {
	h := &diffHarness{
		t:          t,
		ctx:        context.Background(),
		path:       filepath.Join(t.TempDir(), "batchd.db"),
		rng:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		size:       size,
		clock:      time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		workspaces: map[string]string{},
		live:       map[string]bool{},
	}
	h.open(size)
	t.Cleanup(h.close)
	return h
}

func (h *diffHarness) open(size int) {
	h.t.Helper()
	var err error
	h.cached, err = sqlite.Open(h.ctx, h.path, sqlite.Options{ListCacheSize: size})
	if err != nil {
		h.t.Fatalf("open with cache size %d: %v", size, err)
	}
	h.plain, err = sqlite.Open(h.ctx, h.path, sqlite.Options{ListCacheSize: -1})
	if err != nil {
		h.t.Fatalf("open without a cache: %v", err)
	}
	h.size = size
}

func (h *diffHarness) close() {
	if h.cached != nil {
		h.cached.Close()
		h.cached = nil
	}
	if h.plain != nil {
		h.plain.Close()
		h.plain = nil
	}
}

func (h *diffHarness) record(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

func (h *diffHarness) history() string {
	from := max(0, len(h.log)-40)
	return strings.Join(h.log[from:], "\n")
}

// newID returns the id for the next batch: usually a real batch id, sometimes
// an id out of time order, a long one, or one that exists already.
func (h *diffHarness) newID(created time.Time) string {
	switch n := h.rng.IntN(20); {
	case n == 0 && len(h.ids) > 0:
		return h.ids[h.rng.IntN(len(h.ids))] // duplicate: the create must fail
	case n == 1:
		return batch.BatchIDPrefix + strings.Repeat("Z", 40+h.rng.IntN(10))
	case n == 2:
		return fmt.Sprintf("msgbatch_%02d", h.rng.IntN(100))
	case n == 3 && len(h.ids) > 0:
		return h.ids[h.rng.IntN(len(h.ids))] + "x"
	default:
		return batch.NewBatchID(created)
	}
}

func requestsOf(n int) func(yield func(batch.NewRequest, error) bool) {
	return func(yield func(batch.NewRequest, error) bool) {
		for i := range n {
			req := batch.NewRequest{CustomID: fmt.Sprintf("r%d", i), Params: json.RawMessage(`{}`)}
			if !yield(req, nil) {
				return
			}
		}
	}
}

func (h *diffHarness) create() {
	h.clock = h.clock.Add(time.Duration(1+h.rng.IntN(3000)) * time.Millisecond)
	created := h.clock
	workspace := testWorkspaces[h.rng.IntN(len(testWorkspaces))]
	id := h.newID(created)
	var betas []string
	if h.rng.IntN(4) == 0 {
		betas = []string{"beta-one", "beta-two"}
	}

	b, err := h.cached.BatchCreate(h.ctx, store.BatchCreateParams{
		Requests:    requestsOf(1 + h.rng.IntN(3)),
		WorkspaceID: workspace,
		NewBatch: func(int64) batch.Batch {
			return batch.Batch{ID: id, WorkspaceID: workspace,
				Status: batch.StatusInProgress, CreatedAt: created,
				ExpiresAt: created.Add(24 * time.Hour), Betas: betas}
		},
	})
	exists := h.live[id]
	h.record("create %s in %s: err=%v", id, workspace, err)
	if exists {
		if err == nil {
			h.t.Fatalf("create of duplicate id %s succeeded", id)
		}
		return
	}
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	if _, seen := h.workspaces[b.ID]; !seen {
		h.ids = append(h.ids, b.ID)
	}
	h.workspaces[b.ID] = workspace
	h.live[b.ID] = true
}

// pick returns a known id and its workspace, or a random workspace for an
// unknown id.
func (h *diffHarness) pick() (string, string) {
	if len(h.ids) == 0 || h.rng.IntN(10) == 0 {
		return "msgbatch_nope", testWorkspaces[h.rng.IntN(len(testWorkspaces))]
	}
	id := h.ids[h.rng.IntN(len(h.ids))]
	workspace := h.workspaces[id]
	if h.rng.IntN(8) == 0 {
		workspace = testWorkspaces[h.rng.IntN(len(testWorkspaces))]
	}
	return id, workspace
}

func (h *diffHarness) cancel() {
	id, workspace := h.pick()
	h.clock = h.clock.Add(time.Millisecond)
	_, err := h.cached.BatchCancel(h.ctx, store.BatchCancelParams{
		WorkspaceID: workspace, ID: id, Now: h.clock})
	h.record("cancel %s in %s: err=%v", id, workspace, err)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrWrongState) {
		h.t.Fatalf("cancel %s: %v", id, err)
	}
}

// end gives every request of a batch an outcome, either by claiming and
// finishing them or by ending them unclaimed, then ends the batch.
func (h *diffHarness) end() {
	id, _ := h.pick()
	h.clock = h.clock.Add(time.Millisecond)
	now := h.clock
	if h.rng.IntN(2) == 0 {
		reqs, err := h.cached.RequestClaim(h.ctx, store.RequestClaimParams{BatchID: id,
			Owner: "node", Limit: 100, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.t.Fatalf("claim %s: %v", id, err)
		}
		var results []batch.Result
		for i, req := range reqs {
			outcome := batch.OutcomeSucceeded
			body := json.RawMessage(`{"ok":true}`)
			if i%2 == 1 {
				outcome, body = batch.OutcomeErrored, json.RawMessage(`{"error":{}}`)
			}
			results = append(results, batch.Result{BatchID: id, Index: req.Index,
				Fence: req.Fence, Outcome: outcome, Body: body})
		}
		if len(results) > 0 {
			if _, err := h.cached.RequestFinish(h.ctx, store.RequestFinishParams{
				Owner: "node", Results: results}); err != nil {
				h.t.Fatalf("finish %s: %v", id, err)
			}
		}
	} else {
		_, err := h.cached.RequestEndUnclaimed(h.ctx, store.RequestEndUnclaimedParams{
			BatchID: id, Outcome: batch.OutcomeCanceled, Now: now})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.t.Fatalf("end unclaimed %s: %v", id, err)
		}
	}
	ended, err := h.cached.BatchEnd(h.ctx, store.BatchEndParams{ID: id, Now: now})
	h.record("end %s: %v err=%v", id, ended, err)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.t.Fatalf("end %s: %v", id, err)
	}
}

func (h *diffHarness) archive() {
	h.clock = h.clock.Add(time.Millisecond)
	before := h.clock.Add(-time.Duration(h.rng.IntN(60)) * time.Second)
	n, err := h.cached.BatchArchive(h.ctx, store.BatchArchiveParams{
		CreatedBefore: before, Now: h.clock})
	h.record("archive before %s: %d err=%v", before.Format(time.TimeOnly), n, err)
	if err != nil {
		h.t.Fatalf("archive: %v", err)
	}
}

func (h *diffHarness) delete() {
	id, workspace := h.pick()
	err := h.cached.BatchDelete(h.ctx, store.BatchDeleteParams{WorkspaceID: workspace, ID: id})
	h.record("delete %s in %s: err=%v", id, workspace, err)
	if err == nil {
		delete(h.live, id)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrWrongState) {
		h.t.Fatalf("delete %s: %v", id, err)
	}
}

// reopen closes both stores and opens the file again with another cache size.
func (h *diffHarness) reopen() {
	sizes := []int{-1, 0, 1, 2, 3, 4, 5, 7, 10, 17, 50}
	size := sizes[h.rng.IntN(len(sizes))]
	h.close()
	h.open(size)
	h.record("reopen with cache size %d", size)
}

// cursors returns the cursors to list with: every id created, made-up ids
// and ids derived from real ones.
func (h *diffHarness) cursors() []string {
	c := []string{"", "a", "msgbatch_", "msgbatch_0", "msgbatch_50", "msgbatch_zzz", "~",
		batch.BatchIDPrefix + strings.Repeat("Z", 45), strings.Repeat("m", 60)}
	for _, id := range h.ids {
		c = append(c, id, id+"\x00", id[:len(id)-1])
	}
	return c
}

var testLimits = []int{1, 2, 3, 7, 20, 1000}

func (h *diffHarness) compareList(params store.BatchListParams) bool {
	h.t.Helper()
	got, gotErr := h.cached.BatchList(h.ctx, params)
	want, wantErr := h.plain.BatchList(h.ctx, params)
	if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
		h.t.Errorf("cache size %d: BatchList(%+v)\n got %s, %v\nwant %s, %v\nlast operations:\n%s",
			h.size, params, pageIDs(got), gotErr, pageIDs(want), wantErr, h.history())
		return false
	}
	return true
}

func (h *diffHarness) compareGet(params store.BatchGetParams) bool {
	h.t.Helper()
	got, gotErr := h.cached.BatchGet(h.ctx, params)
	want, wantErr := h.plain.BatchGet(h.ctx, params)
	if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
		h.t.Errorf("cache size %d: BatchGet(%+v)\n got %+v, %v\nwant %+v, %v\nlast operations:\n%s",
			h.size, params, got, gotErr, want, wantErr, h.history())
		return false
	}
	return true
}

func pageIDs(page store.BatchPage) string {
	ids := make([]string, len(page.Batches))
	for i, b := range page.Batches {
		ids[i] = b.ID + "/" + string(b.Status)
	}
	return fmt.Sprintf("%v more=%v", ids, page.HasMore)
}

// checkSome compares n random lists and gets.
func (h *diffHarness) checkSome(n int) bool {
	cursors := h.cursors()
	spaces := append(slices.Clone(testWorkspaces), "ws_none", "")
	for range n {
		workspace := spaces[h.rng.IntN(len(spaces))]
		params := store.BatchListParams{WorkspaceID: workspace,
			Limit: testLimits[h.rng.IntN(len(testLimits))]}
		if h.rng.IntN(2) == 0 {
			params.AfterID = cursors[h.rng.IntN(len(cursors))]
		}
		if h.rng.IntN(2) == 0 {
			params.BeforeID = cursors[h.rng.IntN(len(cursors))]
		}
		if !h.compareList(params) {
			return false
		}
		get := store.BatchGetParams{WorkspaceID: workspace,
			ID: cursors[h.rng.IntN(len(cursors))]}
		if !h.compareGet(get) {
			return false
		}
	}
	return true
}

// checkAll compares every combination of up to 15 cursors and three limits
// in every workspace, and the gets of those cursors.
func (h *diffHarness) checkAll() bool {
	cursors := h.cursors()
	h.rng.Shuffle(len(cursors), func(i, j int) { cursors[i], cursors[j] = cursors[j], cursors[i] })
	cursors = append(cursors[:min(len(cursors), 15)], "")
	for _, workspace := range append(slices.Clone(testWorkspaces), "ws_none") {
		for _, after := range cursors {
			for _, before := range cursors {
				for _, limit := range []int{1, 3, 1000} {
					params := store.BatchListParams{WorkspaceID: workspace,
						AfterID: after, BeforeID: before, Limit: limit}
					if !h.compareList(params) {
						return false
					}
				}
			}
			if !h.compareGet(store.BatchGetParams{WorkspaceID: workspace, ID: after}) {
				return false
			}
		}
	}
	return true
}

func (h *diffHarness) step(allowReopen bool) {
	switch n := h.rng.IntN(100); {
	case n < 40:
		h.create()
	case n < 55:
		h.cancel()
	case n < 75:
		h.end()
	case n < 80:
		h.archive()
	case n < 97:
		h.delete()
	case allowReopen:
		h.reopen()
	}
}

// TestCacheRandomOperations runs random sequences of batch changes against a
// store with a small list cache and compares its lists and gets with the
// database after every step.
func TestCacheRandomOperations(t *testing.T) {
	t.Parallel()
	deadline := time.Now().Add(randomTestBudget(15 * time.Second))
	for seed := uint64(1); seed <= 2; seed++ {
		for _, size := range []int{1, 4, 13, 50} {
			t.Run(fmt.Sprintf("seed%d_size%d", seed, size), func(t *testing.T) {
				if time.Now().After(deadline) {
					t.Skip("time budget spent")
				}
				h := newDiffHarness(t, seed*1000+uint64(size), size)
				for i := range 150 {
					h.step(false)
					if !h.checkSome(10) {
						t.Fatalf("mismatch after %d steps", i+1)
					}
				}
				if !h.checkAll() {
					t.Fatal("mismatch in the full check")
				}
			})
		}
	}
}

// TestCacheRandomReopen adds closing and reopening the file with another
// cache size to the random operations.
func TestCacheRandomReopen(t *testing.T) {
	t.Parallel()
	deadline := time.Now().Add(randomTestBudget(8 * time.Second))
	for seed := uint64(1); seed <= 2; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			if time.Now().After(deadline) {
				t.Skip("time budget spent")
			}
			h := newDiffHarness(t, seed*7919, 5)
			for i := range 150 {
				h.step(true)
				if !h.checkSome(10) {
					t.Fatalf("mismatch after %d steps", i+1)
				}
			}
			if !h.checkAll() {
				t.Fatal("mismatch in the full check")
			}
		})
	}
}
