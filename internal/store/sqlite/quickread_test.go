package sqlite_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// TestListWhileDownloadsHoldReads holds as many results downloads open as
// the store has read connections, and checks that get and list still return
// at once: they have connections of their own.
func TestListWhileDownloadsHoldReads(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "batchd.db"),
		sqlite.Options{ListCacheSize: -1})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer st.Close()
	b := endedBatch(t, st)

	downloads := sqlite.ReadPoolSize()
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(downloads)
	for range downloads {
		done.Go(func() {
			first := true
			err := st.ResultList(ctx, store.ResultListParams{WorkspaceID: "w", BatchID: b.ID},
				func(string, batch.Outcome, []byte) error {
					if first {
						first = false
						started.Done()
						<-release
					}
					return nil
				})
			if err != nil {
				t.Errorf("ResultList: %v", err)
			}
		})
	}
	defer done.Wait()
	defer close(release)

	waitGroup(t, &started, 10*time.Second, "downloads to start")
	quickCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := st.BatchList(quickCtx, store.BatchListParams{WorkspaceID: "w", Limit: 20}); err != nil {
		t.Errorf("BatchList while downloads hold the read connections: %v", err)
	}
	if _, err := st.BatchGet(quickCtx, store.BatchGetParams{WorkspaceID: "w", ID: b.ID}); err != nil {
		t.Errorf("BatchGet while downloads hold the read connections: %v", err)
	}
}

// waitGroup waits for wg, failing the test after timeout.
func waitGroup(t *testing.T, wg *sync.WaitGroup, timeout time.Duration, awaited string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, awaited)
	}
}

// endedBatch creates a batch of three requests in workspace "w", finishes
// them and ends it.
func endedBatch(t *testing.T, st store.Store) batch.Batch {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := st.BatchCreate(ctx, store.BatchCreateParams{
		Requests: func(yield func(batch.NewRequest, error) bool) {
			for _, id := range []string{"a", "b", "c"} {
				if !yield(batch.NewRequest{CustomID: id, Params: json.RawMessage(`{}`)}, nil) {
					return
				}
			}
		},
		NewBatch: func(n int64) batch.Batch {
			return batch.Batch{ID: batch.NewBatchID(now), WorkspaceID: "w",
				Status: batch.StatusInProgress, RequestCount: n, CreatedAt: now,
				ExpiresAt: now.Add(time.Hour)}
		},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}

	reqs, err := st.RequestClaim(ctx, store.RequestClaimParams{BatchID: b.ID, Owner: "o",
		Limit: 10, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	results := make([]batch.Result, len(reqs))
	for i, req := range reqs {
		results[i] = batch.Result{BatchID: b.ID, Index: req.Index, Fence: req.Fence,
			Outcome: batch.OutcomeSucceeded, Body: json.RawMessage(`{}`)}
	}
	_, err = st.RequestFinish(ctx, store.RequestFinishParams{Owner: "o", Results: results})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	ended, err := st.BatchEnd(ctx, store.BatchEndParams{ID: b.ID, Now: now.Add(time.Second)})
	if err != nil || !ended {
		t.Fatalf("end: ended %v, error %v", ended, err)
	}
	return b
}
