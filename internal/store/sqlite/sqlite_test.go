package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
	"github.com/batchd/batchd/internal/store/storetest"
)

// TestConformance runs the store suite with the default list cache, with a
// cache of three batches, so that most lists reach past it and read the
// database, and with no cache.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{
		{"DefaultCache", 0},
		{"TinyCache", 3},
		{"NoCache", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				s, err := sqlite.Open(context.Background(),
					filepath.Join(t.TempDir(), "batchd.db"),
					sqlite.Options{ListCacheSize: tc.size})
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				return s
			})
		})
	}
}
