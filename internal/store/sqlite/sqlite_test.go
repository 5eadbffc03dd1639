package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
	"github.com/batchd/batchd/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "batchd.db"))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	})
}
