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

// benchBatches is how many batches the list and open benchmarks store.
const benchBatches = 10_000

// cacheCases are the two ways the benchmarks open the store: with the
// default list cache, and without one, which reads every list from SQLite.
var cacheCases = []struct {
	name string
	opts sqlite.Options
}{
	{"cache", sqlite.Options{}},
	{"database", sqlite.Options{ListCacheSize: -1}},
}

// createBenchBatches creates a database of benchBatches batches of one
// request each in workspace "w", and returns its path and the ids.
func createBenchBatches(b *testing.B) (string, []string) {
	b.Helper()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "batchd.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{ListCacheSize: -1})
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	defer st.Close()

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, benchBatches)
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
	return path, ids
}

// BenchmarkBatchList reads pages of 20 batches at random cursors from a
// workspace of benchBatches batches: the store's share of one list call,
// without HTTP, with the list cache and without it.
func BenchmarkBatchList(b *testing.B) {
	path, ids := createBenchBatches(b)
	for _, cc := range cacheCases {
		b.Run(cc.name, func(b *testing.B) {
			benchBatchList(b, path, ids, cc.opts)
		})
	}
}

func benchBatchList(b *testing.B, path string, ids []string, opts sqlite.Options) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, opts)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	defer st.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	read := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		params := store.BatchListParams{WorkspaceID: "w", Limit: 20}
		switch rng.IntN(3) {
		case 1:
			params.AfterID = ids[rng.IntN(len(ids))]
		case 2:
			params.BeforeID = ids[rng.IntN(len(ids))]
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

// BenchmarkOpen opens and closes a database of benchBatches batches, with
// the list cache, which loads every batch at open, and without it.
func BenchmarkOpen(b *testing.B) {
	path, _ := createBenchBatches(b)
	for _, cc := range cacheCases {
		b.Run(cc.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				st, err := sqlite.Open(ctx, path, cc.opts)
				if err != nil {
					b.Fatalf("open: %v", err)
				}
				st.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/benchBatches*1000,
				"ns/batch")
		})
	}
}
