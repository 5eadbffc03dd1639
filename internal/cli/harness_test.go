package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// The one API key of the test server, and its workspace.
const (
	testKey       = "sk-batchd-cli-test"
	testWorkspace = "wrkspc_test"
)

// testServer is a real batchd on loopback: the SQLite store in a temporary
// directory, the engine and the HTTP API.
type testServer struct {
	t   *testing.T
	url string

	mu sync.Mutex
	// creates holds the body of every create request when captureCreates
	// was set. Guarded by mu.
	creates [][]byte
	// headers holds the headers of the last request. Guarded by mu.
	headers http.Header
}

type serverOptions struct {
	backend        backend.Backend // default: the test model
	captureCreates bool            // record create bodies in testServer.creates
}

func startServer(t *testing.T, opts serverOptions) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "batchd.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	err = st.KeyPut(ctx, store.KeyPutParams{Hash: api.HashKey(testKey), WorkspaceID: testWorkspace,
		CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("put key: %v", err)
	}

	model := opts.backend
	if model == nil {
		model = testmodel.New(testmodel.Config{})
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	clk := clock.System{}
	// A short grace lets the cleanup stop model calls that a test left
	// waiting.
	engineCfg := engine.Config{PollInterval: 20 * time.Millisecond,
		ShutdownGrace: 10 * time.Millisecond}
	eng := engine.New(engineCfg, st, model, clk, logger)
	handler := api.New(api.Config{}, st, clk, eng, logger).Handler()

	s := &testServer{t: t}
	server := httptest.NewServer(s.record(handler, opts.captureCreates))
	s.url = server.URL

	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		_ = eng.Run(ctx)
	}()
	t.Cleanup(func() {
		server.Close()
		cancel()
		<-engineDone
		st.Close()
	})
	return s
}

// record wraps next to keep the headers of each request and, with capture,
// the body of each create request.
func (s *testServer) record(next http.Handler, capture bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.headers = r.Header.Clone()
		s.mu.Unlock()

		if capture && r.Method == http.MethodPost && r.URL.Path == "/v1/messages/batches" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.mu.Lock()
			s.creates = append(s.creates, body)
			s.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

func (s *testServer) createBodies() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.creates...)
}

func (s *testServer) lastHeaders() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headers.Clone()
}

// result is what one command run printed and returned.
type result struct {
	stdout string
	stderr string
	code   int
}

// vars are environment variables for one command run.
type vars map[string]string

// run runs a command against s with the server's URL and key in the
// environment, and stdin empty.
func (s *testServer) run(t *testing.T, args ...string) result {
	t.Helper()
	return runCommand(t, vars{baseURLEnv: s.url, apiKeyEnv: testKey}, "", args...)
}

// mustRun is run that fails the test unless the command succeeds.
func (s *testServer) mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := s.run(t, args...)
	if r.code != 0 {
		t.Fatalf("batchd %s: exit code %d, want 0; stderr:\n%s", strings.Join(args, " "),
			r.code, r.stderr)
	}
	return r
}

// runCommand runs one command with only the given environment variables
// and stdin, bounded by a timeout.
func runCommand(t *testing.T, environ vars, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer
	code := runWithEnv(ctx, args, &env{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(name string) string { return environ[name] },
	})
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// get sends one GET with the test key straight to the server, bypassing
// the CLI, and returns the body.
func (s *testServer) get(t *testing.T, path string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200; body %s", path, resp.StatusCode, body)
	}
	return body
}

// batchView is the part of a MessageBatch the tests read.
type batchView struct {
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

func decodeBatch(t *testing.T, data string) batchView {
	t.Helper()
	var b batchView
	if err := json.Unmarshal([]byte(data), &b); err != nil {
		t.Fatalf("decode batch %q: %v", data, err)
	}
	return b
}

// waitEnded polls the batch through the API until it has ended.
func (s *testServer) waitEnded(t *testing.T, id string) batchView {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b := decodeBatch(t, string(s.get(t, "/v1/messages/batches/"+id)))
		if b.ProcessingStatus == "ended" {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s did not end within a minute: %+v", id, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// createBatch creates a batch of the given JSONL lines through the CLI and
// returns its id.
func (s *testServer) createBatch(t *testing.T, lines ...string) string {
	t.Helper()
	path := writeFile(t, "batch.jsonl", strings.Join(lines, "\n")+"\n")
	return strings.TrimSpace(s.mustRun(t, "create", path).stdout)
}

// request returns one JSONL line with a small valid request.
func request(customID, text string) string {
	return `{"custom_id":"` + customID + `","params":{"model":"claude-test","max_tokens":64,` +
		`"messages":[{"role":"user","content":"` + text + `"}]}}`
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
