package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// endBatch claims and finishes every request of a batch, then ends it.
func endBatch(ctx context.Context, st store.Store, id string) error {
	now := time.Now()
	reqs, err := st.RequestClaim(ctx, store.RequestClaimParams{BatchID: id, Owner: "node",
		Limit: 100, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		return fmt.Errorf("claim %s: %w", id, err)
	}
	var results []batch.Result
	for _, req := range reqs {
		results = append(results, batch.Result{BatchID: id, Index: req.Index,
			Fence: req.Fence, Outcome: batch.OutcomeSucceeded, Body: []byte(`{}`)})
	}
	if len(results) > 0 {
		if _, err := st.RequestFinish(ctx, store.RequestFinishParams{Owner: "node",
			Results: results}); err != nil {
			return fmt.Errorf("finish %s: %w", id, err)
		}
	}
	if _, err := st.BatchEnd(ctx, store.BatchEndParams{ID: id, Now: time.Now()}); err != nil {
		return fmt.Errorf("end %s: %w", id, err)
	}
	return nil
}

func createNow(ctx context.Context, st store.Store, workspace string) (string, error) {
	b, err := st.BatchCreate(ctx, store.BatchCreateParams{
		Requests:    requestsOf(1),
		WorkspaceID: workspace,
		NewBatch: func(int64) batch.Batch {
			now := time.Now()
			return inProgress(batch.NewBatchID(now), workspace, now)
		},
	})
	return b.ID, err
}

// pageAll pages through a workspace with limit 7, downward from the newest
// batch when down is set and upward from below the oldest otherwise. It
// returns the ids in newest-first order.
func pageAll(ctx context.Context, st store.Store, workspace string, down bool) ([]string, error) {
	var pages [][]string
	cursor := ""
	if !down {
		cursor = "msgbatch_" // below every batch id
	}
	for range 10_000 {
		params := store.BatchListParams{WorkspaceID: workspace, Limit: 7}
		if down {
			params.AfterID = cursor
		} else {
			params.BeforeID = cursor
		}
		page, err := st.BatchList(ctx, params)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, b := range page.Batches {
			ids = append(ids, b.ID)
		}
		pages = append(pages, ids)
		if !page.HasMore {
			break
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("empty page with has_more after cursor %q", cursor)
		}
		if down {
			cursor = ids[len(ids)-1]
		} else {
			cursor = ids[0]
		}
	}

	var all []string
	if down {
		for _, p := range pages {
			all = append(all, p...)
		}
	} else {
		for i := len(pages) - 1; i >= 0; i-- {
			all = append(all, pages[i]...)
		}
	}
	return all, nil
}

// TestCacheConcurrentPaging pages through a workspace in both directions
// while other goroutines create, cancel, end and delete batches, and checks
// that every batch that existed before and is never deleted appears exactly
// once, newest first.
func TestCacheConcurrentPaging(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 9, 20, 40, 0} {
		t.Run(fmt.Sprintf("size%d", size), func(t *testing.T) {
			runConcurrentPaging(t, size)
		})
	}
}

func runConcurrentPaging(t *testing.T, size int) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "batchd.db"),
		sqlite.Options{ListCacheSize: size})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer st.Close()

	// Batches with an even index stay. Odd ones are ended and may be deleted
	// while paging.
	var stay, doomed []string
	for i := range 80 {
		workspace := "ws"
		if i%5 == 4 {
			workspace = "ws_other"
		}
		id, err := createNow(ctx, st, workspace)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		switch {
		case workspace != "ws":
		case i%2 == 0:
			stay = append(stay, id)
		default:
			if err := endBatch(ctx, st, id); err != nil {
				t.Fatal(err)
			}
			doomed = append(doomed, id)
		}
	}

	deadline := time.Now().Add(4 * time.Second)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		failures []string
	)
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}

	// Writers.
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var mine []string
			for i := 0; i < 300 && time.Now().Before(deadline); i++ {
				switch rng.IntN(4) {
				case 0:
					workspace := []string{"ws", "ws_other"}[rng.IntN(2)]
					id, err := createNow(ctx, st, workspace)
					if err != nil {
						fail("create: %v", err)
						return
					}
					if workspace == "ws" {
						mine = append(mine, id)
					}
				case 1:
					id := stay[rng.IntN(len(stay))]
					_, err := st.BatchCancel(ctx, store.BatchCancelParams{WorkspaceID: "ws",
						ID: id, Now: time.Now()})
					if err != nil && !errors.Is(err, store.ErrWrongState) {
						fail("cancel %s: %v", id, err)
					}
				case 2:
					if len(mine) == 0 {
						continue
					}
					id := mine[0]
					mine = mine[1:]
					if err := endBatch(ctx, st, id); err != nil {
						fail("%v", err)
						return
					}
					if err := st.BatchDelete(ctx, store.BatchDeleteParams{WorkspaceID: "ws",
						ID: id}); err != nil {
						fail("delete new %s: %v", id, err)
					}
				case 3:
					id := doomed[rng.IntN(len(doomed))]
					err := st.BatchDelete(ctx, store.BatchDeleteParams{WorkspaceID: "ws", ID: id})
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						fail("delete %s: %v", id, err)
					}
				}
			}
		}()
	}

	// Readers.
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			down := r%2 == 0
			for i := 0; i < 200 && time.Now().Before(deadline); i++ {
				all, err := pageAll(ctx, st, "ws", down)
				if err != nil {
					fail("page (down=%v): %v", down, err)
					return
				}
				if msg := checkTraversal(all, stay); msg != "" {
					fail("page (down=%v), pass %d: %s", down, i, msg)
					return
				}
				id := stay[i%len(stay)]
				if _, err := st.BatchGet(ctx, store.BatchGetParams{WorkspaceID: "ws",
					ID: id}); err != nil {
					fail("get %s: %v", id, err)
					return
				}
			}
		}()
	}

	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}

// checkTraversal returns what is wrong with a newest-first list of ids that
// must contain every id of stay exactly once, or "" if nothing is.
func checkTraversal(all, stay []string) string {
	seen := map[string]int{}
	for i, id := range all {
		seen[id]++
		if seen[id] > 1 {
			return fmt.Sprintf("%s appears twice", id)
		}
		if i > 0 && all[i-1] <= id {
			return fmt.Sprintf("%s follows %s: not newest first", id, all[i-1])
		}
	}
	for _, id := range stay {
		if seen[id] != 1 {
			return fmt.Sprintf("%s missing (%d ids seen)", id, len(all))
		}
	}
	return ""
}
