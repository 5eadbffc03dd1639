package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/postgres"
	"github.com/batchd/batchd/internal/store/storetest"
)

// databaseURLEnv names the variable that points the tests at a PostgreSQL
// database. scripts/start-postgres starts one and prints its URL.
const databaseURLEnv = "BATCHD_TEST_DATABASE_URL"

func baseURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(databaseURLEnv)
	if u == "" {
		tb.Skipf("%s is not set; set it to a PostgreSQL URL "+
			"(scripts/start-postgres prints one) to run the PostgreSQL store tests",
			databaseURLEnv)
	}
	return u
}

// newSchemaURL creates an empty schema, drops it when the test ends, and
// returns a connection string whose sessions put their tables there.
func newSchemaURL(tb testing.TB) string {
	tb.Helper()
	base := baseURL(tb)

	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	schema := "batchd_test_" + hex.EncodeToString(suffix[:])

	adminExec(tb, base, `CREATE SCHEMA `+schema)
	tb.Cleanup(func() {
		adminExec(tb, base, `DROP SCHEMA `+schema+` CASCADE`)
	})

	return withSearchPath(tb, base, schema)
}

func adminExec(tb testing.TB, databaseURL, sql string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		tb.Fatalf("connect to %s: %v", databaseURLEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// withSearchPath adds search_path to a URL or keyword=value connection
// string. pgx sends settings it does not know to the server at startup.
func withSearchPath(tb testing.TB, databaseURL, schema string) string {
	tb.Helper()
	if !strings.Contains(databaseURL, "://") {
		return databaseURL + " search_path=" + schema
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		tb.Fatalf("parse %s: %v", databaseURLEnv, err)
	}
	query := u.Query()
	query.Set("search_path", schema)
	u.RawQuery = query.Encode()
	return u.String()
}

func openStore(tb testing.TB, databaseURL string) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), databaseURL)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	baseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, newSchemaURL(t))
	})
}
