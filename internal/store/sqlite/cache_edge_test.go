package sqlite_test

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// openPair opens one new file twice: with a list cache of the given size,
// and without a cache.
func openPair(t *testing.T, size int) (*sqlite.Store, *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "batchd.db")
	cached, err := sqlite.Open(ctx, path, sqlite.Options{ListCacheSize: size})
	if err != nil {
		t.Fatalf("open with a cache: %v", err)
	}
	t.Cleanup(func() { cached.Close() })
	plain, err := sqlite.Open(ctx, path, sqlite.Options{ListCacheSize: -1})
	if err != nil {
		t.Fatalf("open without a cache: %v", err)
	}
	t.Cleanup(func() { plain.Close() })
	return cached, plain
}

func createRow(t *testing.T, st store.Store, row batch.Batch) {
	t.Helper()
	_, err := st.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests:    requestsOf(1),
		WorkspaceID: row.WorkspaceID,
		NewBatch:    func(int64) batch.Batch { return row },
	})
	if err != nil {
		t.Fatalf("create %q: %v", row.ID, err)
	}
}

func sameList(t *testing.T, cached, plain store.Store, params store.BatchListParams) {
	t.Helper()
	ctx := context.Background()
	got, gotErr := cached.BatchList(ctx, params)
	want, wantErr := plain.BatchList(ctx, params)
	if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
		t.Errorf("BatchList(%+v) with a cache:\n got %+v, %v\nwant %+v, %v",
			params, got, gotErr, want, wantErr)
	}
}

func sameGet(t *testing.T, cached, plain store.Store, params store.BatchGetParams) {
	t.Helper()
	ctx := context.Background()
	got, gotErr := cached.BatchGet(ctx, params)
	want, wantErr := plain.BatchGet(ctx, params)
	if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
		t.Errorf("BatchGet(%+v) with a cache:\n got %+v, %v\nwant %+v, %v",
			params, got, gotErr, want, wantErr)
	}
}

func inProgress(id, workspace string, created time.Time) batch.Batch {
	return batch.Batch{ID: id, WorkspaceID: workspace, Status: batch.StatusInProgress,
		CreatedAt: created, ExpiresAt: created.Add(time.Hour)}
}

// TestCacheEmptyBatchID lists a workspace that has a batch whose id is the
// empty string. The database returns it, so the cache must too, or defer to
// the database.
func TestCacheEmptyBatchID(t *testing.T) {
	t.Parallel()
	cached, plain := openPair(t, 0)
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	createRow(t, cached, inProgress("", "ws", created))
	createRow(t, cached, inProgress(batch.NewBatchID(created), "ws", created))

	sameList(t, cached, plain, store.BatchListParams{WorkspaceID: "ws", Limit: 20})
}

// TestCacheEpochTimes stores batches whose times are exactly the Unix epoch.
// The database returns 1970-01-01, and the cache must not turn it into the
// zero time.
func TestCacheEpochTimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cached, plain := openPair(t, 0)
	epoch := time.Unix(0, 0).UTC()
	id := batch.NewBatchID(epoch)
	createRow(t, cached, inProgress(id, "ws", epoch))
	if _, err := cached.BatchCancel(ctx, store.BatchCancelParams{
		WorkspaceID: "ws", ID: id, Now: epoch}); err != nil {
		t.Fatalf("cancel: %v", err)
	}

	sameGet(t, cached, plain, store.BatchGetParams{WorkspaceID: "ws", ID: id})
	sameList(t, cached, plain, store.BatchListParams{WorkspaceID: "ws", Limit: 20})
}

// TestCacheNewBatchExtraFields creates a batch whose NewBatch sets fields the
// insert does not write. The database drops them, so the cache must too.
func TestCacheNewBatchExtraFields(t *testing.T) {
	t.Parallel()
	cached, plain := openPair(t, 0)
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	row := inProgress(batch.NewBatchID(created), "ws", created)
	row.Final.Succeeded = 5
	row.EndedAt = created
	createRow(t, cached, row)

	sameGet(t, cached, plain, store.BatchGetParams{WorkspaceID: "ws", ID: row.ID})
}

// TestCacheIDLengthBoundary creates batches with ids of 47, 48, 49 and 60
// bytes among ordinary ones and compares lists and gets around them.
func TestCacheIDLengthBoundary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cached, plain := openPair(t, 50)
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i, n := range []int{47, 48, 49, 60} {
		before := batch.NewBatchID(created.Add(time.Duration(i) * time.Second))
		long := "msgbatch_0" + strings.Repeat("Q", n-len("msgbatch_0"))
		for _, id := range []string{before, long} {
			createRow(t, cached, inProgress(id, "ws", created))
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if _, err := cached.BatchCancel(ctx, store.BatchCancelParams{
			WorkspaceID: "ws", ID: id, Now: created.Add(time.Minute)}); err != nil {
			t.Fatalf("cancel %s: %v", id, err)
		}
	}

	cursors := append([]string{""}, ids...)
	for _, after := range cursors {
		for _, before := range cursors {
			for _, limit := range []int{1, 2, 5, 100} {
				sameList(t, cached, plain, store.BatchListParams{WorkspaceID: "ws",
					AfterID: after, BeforeID: before, Limit: limit})
			}
		}
		sameGet(t, cached, plain, store.BatchGetParams{WorkspaceID: "ws", ID: after})
	}
}
