package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// Results for expired leases race with RequestEndUnclaimed over the same
// rows. Both lock rows in key order, so neither may fail with a deadlock,
// and every request ends exactly once.
func TestFinishRacesEndUnclaimed(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 2)
	const total = 2000

	for round := range 3 {
		b := create(t, stores[0], &clock{now: epoch}, total)
		stale := epoch.Add(-time.Hour)
		reqs := claim(t, stores[0], b.ID, "old", total, stale)
		results := resultsOf(reqs, batch.OutcomeSucceeded)
		slices.Reverse(results)

		var (
			mu                sync.Mutex
			recorded, changed int
		)
		run(t, 2, func(worker int) error {
			if worker == 0 {
				for chunk := range slices.Chunk(results, 250) {
					n, err := stores[0].RequestFinish(context.Background(),
						store.RequestFinishParams{Owner: "old", Results: chunk})
					if err != nil {
						return fmt.Errorf("round %d: RequestFinish: %w", round, err)
					}
					mu.Lock()
					recorded += n
					mu.Unlock()
				}
				return nil
			}
			n, err := stores[1].RequestEndUnclaimed(context.Background(),
				store.RequestEndUnclaimedParams{
					BatchID: b.ID, Outcome: batch.OutcomeExpired, Now: epoch,
				})
			if err != nil {
				return fmt.Errorf("round %d: RequestEndUnclaimed: %w", round, err)
			}
			mu.Lock()
			changed += n
			mu.Unlock()
			return nil
		})

		if recorded+changed != total {
			t.Errorf("round %d: %d recorded + %d ended = %d, want %d",
				round, recorded, changed, recorded+changed, total)
		}
		ended, err := stores[1].BatchEnd(context.Background(),
			store.BatchEndParams{ID: b.ID, Now: epoch})
		if err != nil || !ended {
			t.Fatalf("round %d: BatchEnd = %v, %v; want true, nil", round, ended, err)
		}
		got, err := stores[0].BatchGet(context.Background(), store.BatchGetParams{ID: b.ID})
		if err != nil {
			t.Fatalf("BatchGet: %v", err)
		}
		want := batch.Counts{Succeeded: int64(recorded), Expired: int64(changed)}
		if got.RequestCounts() != want {
			t.Errorf("round %d: counts = %+v, want %+v", round, got.RequestCounts(), want)
		}
	}
}

func TestClaimUnknownBatch(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 1)
	_, err := stores[0].RequestClaim(context.Background(), store.RequestClaimParams{
		BatchID: "msgbatch_missing", Owner: "o", Limit: 1, Now: epoch, LeaseUntil: epoch,
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RequestClaim of an unknown batch: error = %v, want ErrNotFound", err)
	}
}

func TestResultListStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 1)
	b := create(t, stores[0], &clock{now: epoch}, 10)
	finishAll(t, stores[0], b)

	stop := errors.New("client went away")
	calls := 0
	err := stores[0].ResultList(context.Background(),
		store.ResultListParams{WorkspaceID: "w", BatchID: b.ID},
		func(string, batch.Outcome, []byte) error {
			calls++
			if calls == 3 {
				return stop
			}
			return nil
		})
	if !errors.Is(err, stop) {
		t.Errorf("ResultList error = %v, want the callback's error", err)
	}
	if calls != 3 {
		t.Errorf("callback ran %d times, want 3", calls)
	}

	// The store is still usable: the connection went back to the pool clean.
	lines := 0
	err = stores[0].ResultList(context.Background(),
		store.ResultListParams{WorkspaceID: "w", BatchID: b.ID},
		func(string, batch.Outcome, []byte) error { lines++; return nil })
	if err != nil || lines != 10 {
		t.Errorf("second ResultList = %d lines, %v; want 10, nil", lines, err)
	}
}
