package sqlite_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// BenchmarkBatchList reads pages of 20 batches at random cursors from a
// workspace of 10,000 batches: the store's share of one list call, without
// HTTP. The batches are created before the timer starts.
func BenchmarkBatchList(b *testing.B) {
	const batches = 10_000
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "batchd.db"))
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	defer st.Close()

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, batches)
	for i := range ids {
		created := start.Add(time.Duration(i) * time.Millisecond)
		bt, err := st.BatchCreate(ctx, store.BatchCreateParams{
			Requests: func(yield func(batch.NewRequest, error) bool) {
				yield(batch.NewRequest{CustomID: "r", Params: json.RawMessage(`{}`)}, nil)
			},
			WorkspaceID: "w",
			NewBatch: func(n int64) batch.Batch {
				return batch.Batch{ID: batch.NewBatchID(created), WorkspaceID: "w",
					Status: batch.StatusInProgress, RequestCount: n, CreatedAt: created,
					ExpiresAt: created.Add(24 * time.Hour)}
			},
		})
		if err != nil {
			b.Fatalf("create batch %d: %v", i, err)
		}
		ids[i] = bt.ID
	}

	rng := rand.New(rand.NewPCG(1, 2))
	read := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		params := store.BatchListParams{WorkspaceID: "w", Limit: 20}
		switch rng.IntN(3) {
		case 1:
			params.AfterID = ids[rng.IntN(batches)]
		case 2:
			params.BeforeID = ids[rng.IntN(batches)]
		}
		page, err := st.BatchList(ctx, params)
		if err != nil {
			b.Fatal(err)
		}
		read += len(page.Batches)
	}
	b.StopTimer()

	if perCall := float64(read) / float64(b.N); perCall < 15 {
		b.Fatalf("%.1f batches per page on average, want most pages full", perCall)
	}
}
