package durability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binaryPath is the batchd binary that TestMain builds once per run.
var binaryPath string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "batchd-durability-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "create a directory for the batchd binary: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	binaryPath = filepath.Join(dir, "batchd")
	build := exec.Command("go", "build", "-o", binaryPath, "./cmd/batchd")
	build.Dir = filepath.Join("..", "..") // the module root, from this package's directory
	build.Stdout = os.Stderr
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build batchd: %v\n", err)
		return 1
	}
	return m.Run()
}

// The API key, workspace and version every node accepts.
const (
	apiKey      = "sk-durability-test"
	workspaceID = "wrkspc_durability"
	apiVersion  = "2023-06-01"
)

// Time limits for single steps.
const (
	nodeStartTimeout = 30 * time.Second
	nodeExitTimeout  = 10 * time.Second
	pollInterval     = 10 * time.Millisecond
)

func skipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("durability tests start and kill batchd processes and take tens of seconds; " +
			"run them without -short")
	}
}

// nodeConfig holds the flags of one batchd serve process. Zero fields leave
// the flag out, so batchd's default applies.
type nodeConfig struct {
	// name is the node id (--node-id) and names the node's log file.
	name        string
	dataDir     string
	databaseURL string
	lease       time.Duration
	latency     time.Duration
	concurrency int
}

// node is a running batchd serve process.
type node struct {
	tb      testing.TB
	name    string
	baseURL string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startNode starts batchd serve on a port the kernel picks on 127.0.0.1 and
// waits until it prints its base URL. The process is killed when the test
// ends, and its log is printed if the test failed.
func startNode(tb testing.TB, cfg nodeConfig) *node {
	tb.Helper()
	if cfg.dataDir == "" {
		cfg.dataDir = tb.TempDir() // keeps batchd away from $HOME
	}

	args := []string{"serve",
		"--addr", "127.0.0.1:0",
		"--data-dir", cfg.dataDir,
		"--api-key", apiKey + "=" + workspaceID,
		"--node-id", cfg.name,
	}
	if cfg.databaseURL != "" {
		args = append(args, "--database-url", cfg.databaseURL)
	}
	if cfg.lease > 0 {
		args = append(args, "--lease", cfg.lease.String())
	}
	if cfg.latency > 0 {
		args = append(args, "--test-model-latency", cfg.latency.String())
	}
	if cfg.concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(cfg.concurrency))
	}

	logPath := filepath.Join(tb.TempDir(), cfg.name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		tb.Fatalf("create log file: %v", err)
	}
	defer logFile.Close()

	stdout := &baseURLWriter{found: make(chan string, 1)}
	cmd := exec.Command(binaryPath, args...)
	cmd.Env = nodeEnv()
	cmd.Stdout = stdout
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start batchd %s: %v", cfg.name, err)
	}

	n := &node{tb: tb, name: cfg.name, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // a killed node exits with an error by design
		close(n.exited)
	}()
	tb.Cleanup(func() {
		n.kill()
		if tb.Failed() {
			tb.Logf("log of node %s:\n%s", n.name, n.logTail(40))
		}
	})

	select {
	case n.baseURL = <-stdout.found:
		return n
	case <-n.exited:
		tb.Fatalf("batchd %s exited before it printed ANTHROPIC_BASE_URL; its log:\n%s",
			cfg.name, n.logTail(40))
	case <-time.After(nodeStartTimeout):
		tb.Fatalf("batchd %s printed no ANTHROPIC_BASE_URL within %s; its log:\n%s",
			cfg.name, nodeStartTimeout, n.logTail(40))
	}
	return nil
}

// nodeEnv returns the test's environment without the variables that batchd
// serve reads, so that only the flags configure a node.
func nodeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "BATCHD_API_KEYS", "BATCHD_DATABASE_URL", "BATCHD_DATA_DIR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// kill sends SIGKILL and waits for the process to exit. Killing a node that
// has exited already does nothing.
func (n *node) kill() {
	select {
	case <-n.exited:
		return
	default:
	}

	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.tb.Errorf("SIGKILL batchd %s: %v", n.name, err)
	}
	select {
	case <-n.exited:
	case <-time.After(nodeExitTimeout):
		n.tb.Errorf("batchd %s did not exit within %s of SIGKILL", n.name, nodeExitTimeout)
	}
}

// logTail returns the last lines of the node's stderr.
func (n *node) logTail(lines int) string {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", n.logPath, err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// baseURLWriter receives a node's stdout and sends the value of its first
// ANTHROPIC_BASE_URL line on found.
type baseURLWriter struct {
	mu    sync.Mutex
	buf   []byte
	sent  bool
	found chan string
}

func (w *baseURLWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	w.buf = append(w.buf, p...)
	for !w.sent {
		line, rest, ok := bytes.Cut(w.buf, []byte("\n"))
		if !ok {
			break
		}
		w.buf = rest
		if value, ok := strings.CutPrefix(string(line), "ANTHROPIC_BASE_URL="); ok {
			w.sent = true
			w.found <- value
		}
	}
	if w.sent {
		w.buf = nil
	}
	return len(p), nil
}

// httpClient talks to the nodes. The timeout bounds every call, downloads of
// whole results files included.
var httpClient = &http.Client{Timeout: 2 * time.Minute}

// statusError is an API response with a status other than 200.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// batchJSON is the part of a MessageBatch object the tests check.
type batchJSON struct {
	ID               string     `json:"id"`
	ProcessingStatus string     `json:"processing_status"`
	RequestCounts    countsJSON `json:"request_counts"`
	CreatedAt        time.Time  `json:"created_at"`
	EndedAt          *time.Time `json:"ended_at"`
	ResultsURL       *string    `json:"results_url"`
}

type countsJSON struct {
	Processing int64 `json:"processing"`
	Succeeded  int64 `json:"succeeded"`
	Errored    int64 `json:"errored"`
	Canceled   int64 `json:"canceled"`
	Expired    int64 `json:"expired"`
}

func (c countsJSON) total() int64 {
	return c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
}

// apiRequest sends one authenticated API request and returns the response
// if its status is 200. The caller closes the body.
func apiRequest(ctx context.Context, method, target string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("x-api-key", apiKey)
	req.Header.Set("anthropic-version", apiVersion)
	if body != nil {
		req.Header.Set("content-type", "application/json")
	}

	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &statusError{status: resp.StatusCode, body: string(data)}
	}
	return resp, nil
}

// apiJSON sends one API request and decodes the JSON response into out.
func apiJSON(ctx context.Context, method, target string, body io.Reader, out any) error {
	resp, err := apiRequest(ctx, method, target, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response to %s %s: %w", method, target, err)
	}
	return nil
}

func createBatch(ctx context.Context, baseURL string, body io.Reader) (batchJSON, error) {
	var b batchJSON
	err := apiJSON(ctx, http.MethodPost, baseURL+"/v1/messages/batches", body, &b)
	return b, err
}

func getBatch(ctx context.Context, baseURL, id string) (batchJSON, error) {
	var b batchJSON
	err := apiJSON(ctx, http.MethodGet, baseURL+"/v1/messages/batches/"+id, nil, &b)
	return b, err
}

// listBatches returns every batch of the workspace, following the pages.
func listBatches(ctx context.Context, baseURL string) ([]batchJSON, error) {
	var all []batchJSON
	query := url.Values{"limit": {"100"}}
	for range 10_000 { // far more pages than any test creates
		var page struct {
			Data    []batchJSON `json:"data"`
			HasMore bool        `json:"has_more"`
			LastID  *string     `json:"last_id"`
		}
		target := baseURL + "/v1/messages/batches?" + query.Encode()
		if err := apiJSON(ctx, http.MethodGet, target, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Data...)
		if !page.HasMore || page.LastID == nil {
			return all, nil
		}
		query.Set("after_id", *page.LastID)
	}
	return nil, errors.New("list batches: too many pages")
}

// waitEnded polls a batch until it has ended or ctx is done.
func waitEnded(ctx context.Context, baseURL, id string) (batchJSON, error) {
	var last batchJSON
	for {
		b, err := getBatch(ctx, baseURL, id)
		if err == nil && b.ProcessingStatus == "ended" {
			return b, nil
		}
		if err == nil {
			last = b
		}

		select {
		case <-ctx.Done():
			return last, fmt.Errorf("batch %s has not ended (last seen %s, counts %+v, "+
				"last error %v): %w", id, last.ProcessingStatus, last.RequestCounts, err,
				ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// downloadResults reads a batch's whole results file.
func downloadResults(ctx context.Context, baseURL, id string) ([]byte, error) {
	resp, err := apiRequest(ctx, http.MethodGet, baseURL+"/v1/messages/batches/"+id+"/results", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// customID returns the custom_id of request i of the batch that createBody
// makes for prefix. A prefix must not contain "-".
func customID(prefix string, i int) string {
	return prefix + "-" + strconv.Itoa(i)
}

// writeRequests writes requests from to end (exclusive) of a create body,
// each preceded by a comma except the first of the batch.
func writeRequests(w io.Writer, prefix string, from, end int) error {
	var buf bytes.Buffer
	for i := from; i < end; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"custom_id":%q,"params":{"model":"claude-test","max_tokens":64,`+
			`"messages":[{"role":"user","content":"Question number %d"}]}}`, customID(prefix, i), i)
		if buf.Len() >= 64<<10 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// createBody returns a create body with n requests whose custom_ids are
// prefix-0 to prefix-(n-1).
func createBody(prefix string, n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"requests":[`)
	_ = writeRequests(&buf, prefix, 0, n) // a bytes.Buffer does not fail
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// maxReportedProblems caps the problems checkResults reports one by one.
const maxReportedProblems = 10

// checkResults checks a results file against the batch that createBody made
// for prefix and n: one valid JSON line per request, each custom_id exactly
// once, every result succeeded.
func checkResults(tb testing.TB, body []byte, prefix string, n int) {
	tb.Helper()
	if len(body) == 0 || body[len(body)-1] != '\n' {
		tb.Errorf("results of %s: file of %d bytes does not end in a newline", prefix, len(body))
	}

	problems := 0
	report := func(format string, args ...any) {
		tb.Helper()
		problems++
		if problems <= maxReportedProblems {
			tb.Errorf("results of %s: "+format, append([]any{prefix}, args...)...)
		}
	}

	seen := make([]int, n)
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	for i, line := range lines {
		var rec struct {
			CustomID string `json:"custom_id"`
			Result   struct {
				Type string `json:"type"`
			} `json:"result"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			report("line %d is not valid JSON: %v: %.200s", i+1, err, line)
			continue
		}
		index, ok := parseCustomID(rec.CustomID, prefix, n)
		if !ok {
			report("line %d: custom_id %q does not belong to this batch", i+1, rec.CustomID)
			continue
		}
		seen[index]++
		if rec.Result.Type != "succeeded" {
			report("line %d: %s has result type %q, want succeeded", i+1, rec.CustomID,
				rec.Result.Type)
		}
	}

	for index, count := range seen {
		if count != 1 {
			report("custom_id %s appears %d times, want 1", customID(prefix, index), count)
		}
	}
	if len(lines) != n {
		report("got %d lines, want %d", len(lines), n)
	}
	if problems > maxReportedProblems {
		tb.Errorf("results of %s: %d more problems not shown", prefix, problems-maxReportedProblems)
	}
}

// parseCustomID returns the request index of a custom_id made by customID.
func parseCustomID(id, prefix string, n int) (int, bool) {
	rest, ok := strings.CutPrefix(id, prefix+"-")
	if !ok {
		return 0, false
	}
	index, err := strconv.Atoi(rest)
	if err != nil || index < 0 || index >= n || strconv.Itoa(index) != rest {
		return 0, false
	}
	return index, true
}

// checkCounts checks that an ended batch of n requests all succeeded.
func checkCounts(tb testing.TB, b batchJSON, n int64) {
	tb.Helper()
	if b.ProcessingStatus != "ended" {
		tb.Errorf("batch %s: processing_status %q, want ended", b.ID, b.ProcessingStatus)
	}
	if got := b.RequestCounts.total(); got != n {
		tb.Errorf("batch %s: request_counts add up to %d, want %d: %+v", b.ID, got, n,
			b.RequestCounts)
	}
	if b.RequestCounts.Succeeded != n {
		tb.Errorf("batch %s: %d succeeded, want %d: %+v", b.ID, b.RequestCounts.Succeeded, n,
			b.RequestCounts)
	}
}

// databaseURLEnv names the variable with the PostgreSQL URL for tests;
// scripts/start-postgres starts a server and prints one.
const databaseURLEnv = "BATCHD_TEST_DATABASE_URL"

// pgSchema is an empty schema that the test owns, with a URL whose sessions
// keep their tables there.
type pgSchema struct {
	name string
	url  string
}

// newSchema creates a schema and drops it when the test ends. Nodes started
// after this call are killed before the schema is dropped, because cleanups
// run in reverse order.
func newSchema(tb testing.TB) pgSchema {
	tb.Helper()
	base := os.Getenv(databaseURLEnv)
	if base == "" {
		tb.Skipf("%s is not set; set it to a PostgreSQL URL (scripts/start-postgres "+
			"prints one) to run the PostgreSQL durability tests", databaseURLEnv)
	}

	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	name := "batchd_durability_" + hex.EncodeToString(suffix[:])
	adminExec(tb, base, "CREATE SCHEMA "+name)
	tb.Cleanup(func() { adminExec(tb, base, "DROP SCHEMA "+name+" CASCADE") })

	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parse %s: %v", databaseURLEnv, err)
	}
	query := u.Query()
	query.Set("search_path", name)
	u.RawQuery = query.Encode()
	return pgSchema{name: name, url: u.String()}
}

func adminExec(tb testing.TB, databaseURL, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		tb.Fatalf("connect to %s: %v", databaseURLEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// requestsDB reads the requests table of a schema that batchd nodes use.
type requestsDB struct {
	conn  *pgx.Conn
	table string
}

// openRequestsDB connects to the schema. Its queries name the table with the
// schema, so they fail if batchd put its tables anywhere else.
func openRequestsDB(tb testing.TB, schema pgSchema) *requestsDB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, schema.url)
	if err != nil {
		tb.Fatalf("connect to %s: %v", databaseURLEnv, err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return &requestsDB{conn: conn, table: pgx.Identifier{schema.name, "requests"}.Sanitize()}
}

// progress returns how many requests have a result and how many owner holds.
func (db *requestsDB) progress(ctx context.Context, owner string) (int64, int64, error) {
	var done, held int64
	err := db.conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 2),
		count(*) FILTER (WHERE state = 1 AND owner = $1) FROM `+db.table, owner).
		Scan(&done, &held)
	if err != nil {
		return 0, 0, fmt.Errorf("read progress: %w", err)
	}
	return done, held, nil
}

// waitProgress polls until at least minDone requests have a result and owner
// holds at least one claim.
func (db *requestsDB) waitProgress(ctx context.Context, owner string, minDone int64) error {
	for {
		done, held, err := db.progress(ctx, owner)
		if err != nil {
			return err
		}
		if done >= minDone && held > 0 {
			return nil
		}

		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d results with claims held by %s (got %d results, "+
				"%d claims): %w", minDone, owner, done, held, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// recovery describes how the other nodes took over a killed node's claims.
// The durations count from the SIGKILL.
type recovery struct {
	// claimed is the number of requests the node had claimed when it died.
	claimed int64
	// late is the number of those whose results the dead node's last
	// statement recorded after the kill. PostgreSQL runs a statement to its
	// end after the client has gone, unless client_connection_check_interval
	// is set.
	late int64
	// leaseEnd is when the last of the leases ran out.
	leaseEnd time.Duration
	// first is when another node first claimed one of them.
	first time.Duration
	// all is when every one of them was claimed by another node or finished
	// by a late statement.
	all time.Duration
}

// reclaimQuery counts, among the requests given as parallel arrays of
// batch_seq, request_index and fence, those claimed again (their fence has
// moved on) and those finished under the given fence.
const reclaimQuery = `
SELECT count(*) FILTER (WHERE r.fence > v.fence),
	count(*) FILTER (WHERE r.fence = v.fence AND r.state = 2)
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(seq, idx, fence)
JOIN %s r ON r.batch_seq = v.seq AND r.request_index = v.idx`

// killAndMeasure kills victim, whose node id is its name, and polls the
// requests table until every request it had claimed is claimed by another
// node or finished.
func (db *requestsDB) killAndMeasure(ctx context.Context, victim *node) (recovery, error) {
	killedAt := time.Now()
	victim.kill()

	var rec recovery
	rows, err := db.conn.Query(ctx, `SELECT batch_seq, request_index, fence, lease_until
		FROM `+db.table+` WHERE state = 1 AND owner = $1`, victim.name)
	if err != nil {
		return rec, fmt.Errorf("read the claims of %s: %w", victim.name, err)
	}
	var (
		seqs, indexes, fences []int64
		lastLease             time.Time
	)
	for rows.Next() {
		var seq, index, fence int64
		var leaseUntil time.Time
		if err := rows.Scan(&seq, &index, &fence, &leaseUntil); err != nil {
			rows.Close()
			return rec, fmt.Errorf("read the claims of %s: %w", victim.name, err)
		}
		seqs, indexes, fences = append(seqs, seq), append(indexes, index), append(fences, fence)
		if leaseUntil.After(lastLease) {
			lastLease = leaseUntil
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rec, fmt.Errorf("read the claims of %s: %w", victim.name, err)
	}
	rec.claimed = int64(len(seqs))
	if rec.claimed == 0 {
		return rec, fmt.Errorf("node %s held no claims when it was killed", victim.name)
	}
	rec.leaseEnd = lastLease.Sub(killedAt)

	query := fmt.Sprintf(reclaimQuery, db.table)
	for {
		var reclaimed int64
		err := db.conn.QueryRow(ctx, query, seqs, indexes, fences).Scan(&reclaimed, &rec.late)
		if err != nil {
			return rec, fmt.Errorf("read the claims of %s: %w", victim.name, err)
		}
		if reclaimed > 0 && rec.first == 0 {
			rec.first = time.Since(killedAt)
		}
		if reclaimed+rec.late == rec.claimed {
			rec.all = time.Since(killedAt)
			return rec, nil
		}

		select {
		case <-ctx.Done():
			return rec, fmt.Errorf("%d of %d requests that %s had claimed are neither claimed "+
				"again nor finished %s after its SIGKILL: %w", rec.claimed-reclaimed-rec.late,
				rec.claimed, victim.name, time.Since(killedAt), ctx.Err())
		case <-time.After(pollInterval / 2):
		}
	}
}
