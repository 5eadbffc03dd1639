package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/postgres"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// nodes opens n stores, each with its own pool, on one new schema, as n
// batchd nodes sharing a database would. It returns them and the schema's
// connection string.
func nodes(t *testing.T, n int) ([]*postgres.Store, string) {
	t.Helper()
	schemaURL := newSchemaURL(t)
	stores := make([]*postgres.Store, n)
	for i := range stores {
		stores[i] = openStore(t, schemaURL)
		t.Cleanup(func() { stores[i].Close() })
	}
	return stores, schemaURL
}

// clock hands out increasing creation times to NewBatch callbacks.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) newBatch(workspace string) func(int64) batch.Batch {
	return func(int64) batch.Batch {
		c.mu.Lock()
		c.now = c.now.Add(time.Millisecond)
		created := c.now
		c.mu.Unlock()
		return batch.Batch{
			ID:          batch.NewBatchID(created),
			WorkspaceID: workspace,
			Status:      batch.StatusInProgress,
			CreatedAt:   created,
			ExpiresAt:   created.Add(24 * time.Hour),
		}
	}
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

func create(t *testing.T, s store.Store, c *clock, n int) batch.Batch {
	t.Helper()
	b, err := s.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requestsOf(n), NewBatch: c.newBatch("w"),
	})
	if err != nil {
		t.Fatalf("BatchCreate: %v", err)
	}
	return b
}

func claim(t *testing.T, s store.Store, batchID, owner string, limit int,
	now time.Time) []batch.Request {
	t.Helper()
	reqs, err := s.RequestClaim(context.Background(), store.RequestClaimParams{
		BatchID: batchID, Owner: owner, Limit: limit, Now: now, LeaseUntil: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatalf("RequestClaim: %v", err)
	}
	return reqs
}

func resultsOf(reqs []batch.Request, outcome batch.Outcome) []batch.Result {
	results := make([]batch.Result, len(reqs))
	for i, req := range reqs {
		results[i] = batch.Result{
			BatchID: req.BatchID, Index: req.Index, Fence: req.Fence, Outcome: outcome,
			Body: json.RawMessage(fmt.Sprintf(`{"n":%d}`, req.Index)),
		}
	}
	return results
}

func finish(t *testing.T, s store.Store, owner string, results []batch.Result) int {
	t.Helper()
	n, err := s.RequestFinish(context.Background(), store.RequestFinishParams{
		Owner: owner, Results: results,
	})
	if err != nil {
		t.Fatalf("RequestFinish: %v", err)
	}
	return n
}

// finishAll claims and finishes every request of b, then ends it.
func finishAll(t *testing.T, s store.Store, b batch.Batch) {
	t.Helper()
	for {
		reqs := claim(t, s, b.ID, "finisher", 1000, epoch)
		if len(reqs) == 0 {
			break
		}
		finish(t, s, "finisher", resultsOf(reqs, batch.OutcomeSucceeded))
	}
	ended, err := s.BatchEnd(context.Background(), store.BatchEndParams{ID: b.ID, Now: epoch})
	if err != nil || !ended {
		t.Fatalf("BatchEnd = %v, %v; want true, nil", ended, err)
	}
}

// countRows returns the number of rows of table in the schema of schemaURL.
func countRows(t *testing.T, schemaURL, table string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, schemaURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)

	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// run starts fn in n goroutines, waits for them and fails the test with the
// first error any of them returned.
func run(t *testing.T, n int, fn func(worker int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range n {
		wg.Go(func() {
			if err := fn(w); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestNodesClaimDisjoint(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 2)
	const total = 4000
	b := create(t, stores[0], &clock{now: epoch}, total)

	var (
		mu   sync.Mutex
		seen = map[int64]int{}
	)
	run(t, 8, func(worker int) error {
		s := stores[worker%2]
		owner := fmt.Sprintf("node-%d-worker-%d", worker%2, worker)
		for range total { // bounded: each round claims at least one or stops
			reqs, err := s.RequestClaim(context.Background(), store.RequestClaimParams{
				BatchID: b.ID, Owner: owner, Limit: 37, Now: epoch, LeaseUntil: epoch.Add(time.Hour),
			})
			if err != nil {
				return fmt.Errorf("RequestClaim: %w", err)
			}
			if len(reqs) == 0 {
				return nil
			}
			if len(reqs) > 37 {
				return fmt.Errorf("claimed %d requests with limit 37", len(reqs))
			}
			mu.Lock()
			for _, r := range reqs {
				seen[r.Index]++
			}
			mu.Unlock()
		}
		return nil
	})

	if len(seen) != total {
		t.Errorf("claimed %d distinct requests, want %d", len(seen), total)
	}
	for index, n := range seen {
		if n != 1 {
			t.Errorf("request %d claimed %d times, want 1", index, n)
		}
	}
}

func TestNodesEndOnce(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 2)
	b := create(t, stores[0], &clock{now: epoch}, 500)
	reqs := claim(t, stores[1], b.ID, "a", 500, epoch)
	finish(t, stores[1], "a", resultsOf(reqs[:300], batch.OutcomeSucceeded))
	finish(t, stores[1], "a", resultsOf(reqs[300:], batch.OutcomeErrored))

	var (
		mu    sync.Mutex
		ended int
	)
	run(t, 8, func(worker int) error {
		ok, err := stores[worker%2].BatchEnd(context.Background(), store.BatchEndParams{
			ID: b.ID, Now: epoch.Add(time.Duration(worker) * time.Second),
		})
		if err != nil {
			return fmt.Errorf("BatchEnd: %w", err)
		}
		if ok {
			mu.Lock()
			ended++
			mu.Unlock()
		}
		return nil
	})

	if ended != 1 {
		t.Errorf("BatchEnd returned true %d times, want 1", ended)
	}
	got, err := stores[0].BatchGet(context.Background(), store.BatchGetParams{ID: b.ID})
	if err != nil {
		t.Fatalf("BatchGet: %v", err)
	}
	want := batch.Counts{Succeeded: 300, Errored: 200}
	if got.RequestCounts() != want {
		t.Errorf("counts = %+v, want %+v", got.RequestCounts(), want)
	}
}

func TestNodesEndUnclaimedCountsExact(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 2)
	const total = 3000
	b := create(t, stores[0], &clock{now: epoch}, total)
	live := claim(t, stores[0], b.ID, "live", 100, epoch)

	var (
		mu      sync.Mutex
		changed int
	)
	run(t, 6, func(worker int) error {
		n, err := stores[worker%2].RequestEndUnclaimed(context.Background(),
			store.RequestEndUnclaimedParams{
				BatchID: b.ID, Outcome: batch.OutcomeCanceled, Now: epoch,
			})
		if err != nil {
			return fmt.Errorf("RequestEndUnclaimed: %w", err)
		}
		mu.Lock()
		changed += n
		mu.Unlock()
		return nil
	})

	if want := total - len(live); changed != want {
		t.Errorf("calls changed %d requests in all, want %d", changed, want)
	}
	if n := finish(t, stores[1], "live", resultsOf(live, batch.OutcomeSucceeded)); n != len(live) {
		t.Errorf("live owner recorded %d results, want %d", n, len(live))
	}
}

func TestNodesArchiveOnce(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 2)
	c := &clock{now: epoch}
	const batches = 120 // more than two archive chunks
	for range batches {
		b := create(t, stores[0], c, 1)
		finishAll(t, stores[0], b)
	}

	var (
		mu       sync.Mutex
		archived int
	)
	run(t, 4, func(worker int) error {
		n, err := stores[worker%2].BatchArchive(context.Background(), store.BatchArchiveParams{
			CreatedBefore: epoch.Add(time.Hour), Now: epoch.Add(30 * 24 * time.Hour),
		})
		if err != nil {
			return fmt.Errorf("BatchArchive: %w", err)
		}
		mu.Lock()
		archived += n
		mu.Unlock()
		return nil
	})

	if archived != batches {
		t.Errorf("archived %d batches in all, want %d", archived, batches)
	}
}

// A client that pages with before_id must never see a batch appear below
// one it has already seen, so ids must become visible in increasing order
// across nodes.
func TestNodesIDsFollowCommitOrder(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 2)
	c := &clock{now: epoch}
	const creates = 60

	done := make(chan struct{})
	var (
		readerErr error
		readerWG  sync.WaitGroup
	)
	readerWG.Go(func() {
		seen := map[string]bool{}
		highest := ""
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			finished := false
			select {
			case <-done:
				finished = true
			default:
			}

			page, err := stores[0].BatchList(context.Background(), store.BatchListParams{
				WorkspaceID: "w", Limit: creates + 1,
			})
			if err != nil {
				readerErr = err
				return
			}
			pollHighest := highest
			for _, b := range page.Batches {
				if seen[b.ID] {
					continue
				}
				seen[b.ID] = true
				if b.ID < highest {
					readerErr = fmt.Errorf("batch %s appeared after %s was listed", b.ID, highest)
					return
				}
				pollHighest = max(pollHighest, b.ID)
			}
			highest = pollHighest
			if finished {
				return
			}
		}
		readerErr = errors.New("reader timed out")
	})

	run(t, 6, func(worker int) error {
		for range creates / 6 {
			_, err := stores[worker%2].BatchCreate(context.Background(), store.BatchCreateParams{
				Requests: requestsOf(3), NewBatch: c.newBatch("w"),
			})
			if err != nil {
				return fmt.Errorf("BatchCreate: %w", err)
			}
		}
		return nil
	})
	close(done)
	readerWG.Wait()
	if readerErr != nil {
		t.Fatal(readerErr)
	}
}

func TestOpenConcurrentMigrations(t *testing.T) {
	t.Parallel()
	schemaURL := newSchemaURL(t)

	var (
		mu     sync.Mutex
		stores []*postgres.Store
	)
	run(t, 4, func(int) error {
		s, err := postgres.Open(context.Background(), schemaURL)
		if err != nil {
			return fmt.Errorf("Open: %w", err)
		}
		mu.Lock()
		stores = append(stores, s)
		mu.Unlock()
		return nil
	})
	for _, s := range stores {
		s.Close()
	}
}
