package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// TestCacheLoadedAtOpen fills a database, opens it again with a list cache
// smaller than its batches, and checks that every list and get returns what
// the database contains.
func TestCacheLoadedAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "batchd.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var ids []string // ascending, both workspaces
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 14 {
		workspace := []string{"wrkspc_a", "wrkspc_b"}[i%3/2]
		created := start.Add(time.Duration(i) * time.Second)
		b, err := st.BatchCreate(ctx, store.BatchCreateParams{
			Requests: requestsOf(1),
			NewBatch: func(int64) batch.Batch {
				return batch.Batch{ID: batch.NewBatchID(created), WorkspaceID: workspace,
					Status: batch.StatusInProgress, CreatedAt: created,
					ExpiresAt: created.Add(time.Hour)}
			},
		})
		if err != nil {
			t.Fatalf("BatchCreate: %v", err)
		}
		ids = append(ids, b.ID)
	}
	st.Close()

	cached, err := sqlite.Open(ctx, path, sqlite.Options{ListCacheSize: 5})
	if err != nil {
		t.Fatalf("open with a cache: %v", err)
	}
	defer cached.Close()
	plain, err := sqlite.Open(ctx, path, sqlite.Options{ListCacheSize: -1})
	if err != nil {
		t.Fatalf("open without a cache: %v", err)
	}
	defer plain.Close()

	cursors := append([]string{""}, ids...)
	for _, workspace := range []string{"wrkspc_a", "wrkspc_b", "wrkspc_none"} {
		for _, after := range cursors {
			for _, before := range cursors {
				params := store.BatchListParams{WorkspaceID: workspace, AfterID: after,
					BeforeID: before, Limit: 3}
				sameList(t, cached, plain, params)
			}
		}
		for _, id := range ids {
			sameGet(t, cached, plain, store.BatchGetParams{WorkspaceID: workspace, ID: id})
		}
	}
}
