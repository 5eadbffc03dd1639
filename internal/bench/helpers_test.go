package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/postgres"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// databaseURLEnv names the variable with the PostgreSQL URL.
// scripts/start-postgres starts a server and prints one.
const databaseURLEnv = "BATCHD_TEST_DATABASE_URL"

// The one API key and workspace of the benchmarks.
const (
	benchKey       = "bench-key"
	benchWorkspace = "wrkspc_bench"
)

var baselineFlag = flag.Bool("baseline", true,
	"measure the baselines in each run; turn off to profile the measured path alone")

// processCleanups run after every benchmark of the process, for fixtures
// that several runs (-count) share.
var (
	cleanupMu        sync.Mutex
	processCleanups  []func()
	processTempDir   string
	processTempDirMu sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()

	cleanupMu.Lock()
	for _, f := range slices.Backward(processCleanups) {
		f()
	}
	cleanupMu.Unlock()
	if processTempDir != "" {
		os.RemoveAll(processTempDir)
	}
	os.Exit(code)
}

func atProcessEnd(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	processCleanups = append(processCleanups, f)
}

// sharedTempDir returns a directory that lasts until the process ends, for
// fixtures that outlive one benchmark run.
func sharedTempDir(tb testing.TB) string {
	tb.Helper()
	processTempDirMu.Lock()
	defer processTempDirMu.Unlock()
	if processTempDir == "" {
		dir, err := os.MkdirTemp("", "batchd-bench-")
		if err != nil {
			tb.Fatalf("create temporary directory: %v", err)
		}
		processTempDir = dir
	}
	return processTempDir
}

// backendCase is one storage backend under test.
type backendCase struct {
	name string
	// open returns a new, empty store that lasts until cleanup is called.
	open func(tb testing.TB) (st store.Store, cleanup func())
}

var backends = []backendCase{
	{name: "sqlite", open: openSQLite},
	{name: "postgres", open: openPostgres},
}

func openSQLite(tb testing.TB) (store.Store, func()) {
	tb.Helper()
	st, _, cleanup := openSQLiteFile(tb)
	return st, cleanup
}

// openSQLiteFile opens a new SQLite store with the default options and also
// returns the path of its database file.
func openSQLiteFile(tb testing.TB) (store.Store, string, func()) {
	tb.Helper()
	dir, err := os.MkdirTemp(sharedTempDir(tb), "sqlite-")
	if err != nil {
		tb.Fatalf("create temporary directory: %v", err)
	}
	path := filepath.Join(dir, "batchd.db")
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		tb.Fatalf("open SQLite store: %v", err)
	}
	return st, path, func() {
		st.Close()
		os.RemoveAll(dir)
	}
}

func openPostgres(tb testing.TB) (store.Store, func()) {
	tb.Helper()
	schemaURL, dropSchema := newSchema(tb)
	st, err := postgres.Open(context.Background(), schemaURL)
	if err != nil {
		dropSchema()
		tb.Fatalf("open PostgreSQL store: %v", err)
	}
	return st, func() {
		st.Close()
		dropSchema()
	}
}

// postgresURL returns the database URL from the environment, or skips.
func postgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(databaseURLEnv)
	if u == "" {
		tb.Skipf("%s is not set; set it to a PostgreSQL URL (scripts/start-postgres "+
			"prints one) to run the PostgreSQL benchmarks", databaseURLEnv)
	}
	return u
}

// newSchema creates an empty schema and returns a URL whose sessions use it,
// and a function that drops it.
func newSchema(tb testing.TB) (string, func()) {
	tb.Helper()
	base := postgresURL(tb)

	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	schema := "batchd_bench_" + hex.EncodeToString(suffix[:])
	if err := adminExec(base, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	drop := func() {
		if err := adminExec(base, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Logf("drop schema %s: %v", schema, err)
		}
	}

	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		drop()
		tb.Fatalf("%s must be a postgres:// URL", databaseURLEnv)
	}
	query := u.Query()
	query.Set("search_path", schema)
	u.RawQuery = query.Encode()
	return u.String(), drop
}

func adminExec(databaseURL, sql string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// putBenchKey stores the benchmark API key.
func putBenchKey(tb testing.TB, st store.Store) {
	tb.Helper()
	err := st.KeyPut(context.Background(), store.KeyPutParams{
		Hash: api.HashKey(benchKey), WorkspaceID: benchWorkspace, CreatedAt: time.Now(),
	})
	if err != nil {
		tb.Fatalf("put API key: %v", err)
	}
}

// server is batchd's HTTP API on loopback in this process, with or without
// the engine running behind it.
type server struct {
	url    string
	client *http.Client
	close  func()
}

// startServer serves st on loopback. With eng nil, no engine runs, and
// creates notify nothing.
func startServer(st store.Store, eng *engine.Engine) *server {
	ctx, cancel := context.WithCancel(context.Background())
	logger := discardLogger()

	var notifier api.Notifier
	if eng != nil {
		notifier = eng
	}
	httpServer := httptest.NewServer(api.New(api.Config{}, st, clock.System{}, notifier,
		logger).Handler())

	engineDone := make(chan struct{})
	if eng == nil {
		close(engineDone)
	} else {
		go func() {
			defer close(engineDone)
			_ = eng.Run(ctx)
		}()
	}

	transport := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}
	return &server{
		url:    httpServer.URL,
		client: &http.Client{Transport: transport, Timeout: 10 * time.Minute},
		close: func() {
			transport.CloseIdleConnections()
			httpServer.Close()
			cancel()
			<-engineDone
		},
	}
}

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newAPIRequest returns a request with the benchmark key and API version.
func newAPIRequest(method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("x-api-key", benchKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	if body != nil {
		req.Header.Set("content-type", "application/json")
	}
	return req, nil
}

// batchStatus is the part of a MessageBatch the benchmarks read.
type batchStatus struct {
	ID               string `json:"id"`
	ProcessingStatus string `json:"processing_status"`
	RequestCounts    struct {
		Processing int64 `json:"processing"`
		Succeeded  int64 `json:"succeeded"`
		Errored    int64 `json:"errored"`
		Canceled   int64 `json:"canceled"`
		Expired    int64 `json:"expired"`
	} `json:"request_counts"`
}

// doBatch sends one request whose response is a MessageBatch and decodes it.
func doBatch(client *http.Client, req *http.Request) (batchStatus, error) {
	resp, err := client.Do(req)
	if err != nil {
		return batchStatus{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return batchStatus{}, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return batchStatus{}, fmt.Errorf("%s %s: status %d: %.500s", req.Method, req.URL.Path,
			resp.StatusCode, data)
	}

	var b batchStatus
	if err := json.Unmarshal(data, &b); err != nil {
		return batchStatus{}, fmt.Errorf("decode batch: %w", err)
	}
	return b, nil
}

// waitEnded polls GET /v1/messages/batches/{id} every interval until the
// batch has ended or timeout has passed.
func waitEnded(client *http.Client, baseURL, id string, interval,
	timeout time.Duration) (batchStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		req, err := newAPIRequest(http.MethodGet, baseURL+"/v1/messages/batches/"+id, nil)
		if err != nil {
			return batchStatus{}, err
		}
		b, err := doBatch(client, req)
		if err != nil {
			return batchStatus{}, err
		}
		if b.ProcessingStatus == "ended" {
			return b, nil
		}
		if time.Now().After(deadline) {
			return b, fmt.Errorf("batch %s did not end within %s: %+v", id, timeout, b)
		}
		time.Sleep(interval)
	}
}

// smallParams returns the params of request i of a synthetic batch: a short
// valid Messages request for the test model.
func smallParams(i int) []byte {
	return []byte(`{"model":"claude-test","max_tokens":64,"messages":[{"role":"user",` +
		`"content":"Hello number ` + strconv.Itoa(i) + `"}]}`)
}

// smallCustomID returns the custom_id of request i of a synthetic batch.
func smallCustomID(i int) string {
	return "r-" + strconv.Itoa(i)
}

// createBody returns a create body with n requests made by smallParams.
func createBody(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"requests":[`)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"custom_id":"` + smallCustomID(i) + `","params":`)
		buf.Write(smallParams(i))
		buf.WriteByte('}')
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// percentile returns the nearest-rank p-th percentile, 0 < p <= 100, of
// sorted values, or 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// millis converts d to fractional milliseconds for b.ReportMetric.
func millis(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// micros converts d to fractional microseconds for b.ReportMetric.
func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}
