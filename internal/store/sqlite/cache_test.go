package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
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
			Requests: oneRequest(),
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
				compareList(t, cached, plain, params)
			}
		}
		for _, id := range ids {
			compareGet(t, cached, plain, store.BatchGetParams{WorkspaceID: workspace, ID: id})
		}
	}
}

func compareList(t *testing.T, cached, plain store.Store, params store.BatchListParams) {
	t.Helper()
	ctx := context.Background()
	got, err := cached.BatchList(ctx, params)
	if err != nil {
		t.Fatalf("BatchList(%+v) with a cache: %v", params, err)
	}
	want, err := plain.BatchList(ctx, params)
	if err != nil {
		t.Fatalf("BatchList(%+v): %v", params, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("BatchList(%+v) with a cache:\n got %v\nwant %v", params, got, want)
	}
}

func compareGet(t *testing.T, cached, plain store.Store, params store.BatchGetParams) {
	t.Helper()
	ctx := context.Background()
	got, gotErr := cached.BatchGet(ctx, params)
	want, wantErr := plain.BatchGet(ctx, params)
	if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
		t.Errorf("BatchGet(%+v) with a cache = %v, %v; want %v, %v",
			params, got, gotErr, want, wantErr)
	}
}

func oneRequest() func(yield func(batch.NewRequest, error) bool) {
	return func(yield func(batch.NewRequest, error) bool) {
		yield(batch.NewRequest{CustomID: "only", Params: json.RawMessage(`{}`)}, nil)
	}
}
