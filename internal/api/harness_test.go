package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/apitest/openapi"
	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

// Keys of the two test workspaces.
const (
	keyA       = "test-key-a"
	keyB       = "test-key-b"
	workspaceA = "wrkspc_a"
	workspaceB = "wrkspc_b"
)

// harness is a real batchd on loopback: the SQLite store in a temporary
// directory, the engine and the HTTP API.
type harness struct {
	t      *testing.T
	url    string
	store  store.Store
	engine *engine.Engine
	clock  clock.Clock
	spec   *openapi.Validator
}

type harnessOptions struct {
	clock    clock.Clock // default: the system clock
	model    testmodel.Config
	backend  backend.Backend // overrides model
	engine   engine.Config
	api      api.Config
	noEngine bool // do not run the engine in the background
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "batchd.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	for key, workspace := range map[string]string{keyA: workspaceA, keyB: workspaceB} {
		err := st.KeyPut(ctx, store.KeyPutParams{Hash: api.HashKey(key), WorkspaceID: workspace})
		if err != nil {
			t.Fatalf("put key: %v", err)
		}
	}

	clk := opts.clock
	if clk == nil {
		clk = clock.System{}
	}
	model := opts.backend
	if model == nil {
		model = testmodel.New(opts.model)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if opts.engine.PollInterval == 0 {
		opts.engine.PollInterval = 20 * time.Millisecond
	}
	eng := engine.New(opts.engine, st, model, clk, logger)
	server := httptest.NewServer(api.New(opts.api, st, clk, eng, logger).Handler())

	engineDone := make(chan struct{})
	if opts.noEngine {
		close(engineDone)
	} else {
		go func() {
			defer close(engineDone)
			_ = eng.Run(ctx)
		}()
	}
	t.Cleanup(func() {
		server.Close()
		cancel()
		<-engineDone
		st.Close()
	})

	return &harness{t: t, url: server.URL, store: st, engine: eng, clock: clk,
		spec: openapi.Load(t)}
}

// client returns an official Go SDK client for the workspace of key. Every
// response it receives is checked against the OpenAPI schemas.
func (h *harness) client(key string) anthropic.Client {
	return anthropic.NewClient(
		option.WithBaseURL(h.url),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithMiddleware(h.validateAnswer),
	)
}

// validateAnswer is SDK middleware that validates each answer's body against
// the schema for its path and status, then hands the body on unchanged.
func (h *harness) validateAnswer(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	resp, err := next(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	path := req.URL.Path
	var check error
	switch {
	case resp.StatusCode != http.StatusOK:
		check = h.spec.Error(body)
	case strings.HasSuffix(path, "/results"):
		for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
			if err := h.spec.ResultLine(line); err != nil {
				check = err
				break
			}
		}
	case req.Method == http.MethodDelete:
		check = h.spec.Deleted(body)
	case path == "/v1/messages/batches" && req.Method == http.MethodGet:
		check = h.spec.Page(body)
	default:
		check = h.spec.Batch(body)
	}
	if check != nil {
		h.t.Errorf("%s %s: answer does not match the schema: %v", req.Method, path, check)
	}
	return resp, nil
}

// response is one raw HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one HTTP request with the standard headers for key, unless
// headers overrides them (an empty value deletes a header).
func (h *harness) do(method, path string, body []byte, headers map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	req.Header.Set("x-api-key", keyA)
	req.Header.Set("anthropic-version", "2023-06-01")
	if body != nil {
		req.Header.Set("content-type", "application/json")
	}
	for name, value := range headers {
		switch {
		case name == "Host":
			req.Host = value
		case value == "":
			req.Header.Del(name)
		default:
			req.Header.Set(name, value)
		}
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("read body: %v", err)
	}
	if resp.Header.Get("request-id") == "" {
		h.t.Errorf("%s %s: no request-id header", method, path)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// checkError asserts that r is the JSON error envelope with status and type,
// valid against the OpenAPI schema, and returns its message.
func (h *harness) checkError(r response, status int, errorType string) string {
	h.t.Helper()
	if r.status != status {
		h.t.Errorf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("content-type"); !strings.HasPrefix(ct, "application/json") {
		h.t.Errorf("content-type = %q, want application/json", ct)
	}
	// The OpenAPI document's error type enum lacks request_too_large, which
	// the API's errors page documents for 413. Check the rest of the shape.
	schemaBody := bytes.Replace(r.body, []byte(`"request_too_large"`),
		[]byte(`"invalid_request_error"`), 1)
	if err := h.spec.Error(schemaBody); err != nil {
		h.t.Errorf("error body does not match the schema: %v\n%s", err, r.body)
	}

	var envelope struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(r.body, &envelope); err != nil {
		h.t.Fatalf("decode error body %s: %v", r.body, err)
	}
	if envelope.Error.Type != errorType {
		h.t.Errorf("error type = %q, want %q (message %q)", envelope.Error.Type, errorType,
			envelope.Error.Message)
	}
	if envelope.RequestID != r.header.Get("request-id") {
		h.t.Errorf("request_id %q differs from header %q", envelope.RequestID,
			r.header.Get("request-id"))
	}
	if envelope.Error.Message == "" {
		h.t.Error("error message is empty")
	}
	return envelope.Error.Message
}

// batchJSON is the subset of a MessageBatch the tests read.
type batchJSON struct {
	ID               string  `json:"id"`
	ProcessingStatus string  `json:"processing_status"`
	ResultsURL       *string `json:"results_url"`
	ArchivedAt       *string `json:"archived_at"`
	EndedAt          *string `json:"ended_at"`
	RequestCounts    struct {
		Processing int64 `json:"processing"`
		Succeeded  int64 `json:"succeeded"`
		Errored    int64 `json:"errored"`
		Canceled   int64 `json:"canceled"`
		Expired    int64 `json:"expired"`
	} `json:"request_counts"`
}

// decodeBatch validates r as a MessageBatch and decodes it.
func (h *harness) decodeBatch(r response) batchJSON {
	h.t.Helper()
	if r.status != http.StatusOK {
		h.t.Fatalf("status = %d, want 200; body %s", r.status, r.body)
	}
	if err := h.spec.Batch(r.body); err != nil {
		h.t.Errorf("batch does not match the schema: %v\n%s", err, r.body)
	}
	var b batchJSON
	if err := json.Unmarshal(r.body, &b); err != nil {
		h.t.Fatalf("decode batch: %v", err)
	}
	return b
}

// createBody returns a create body with n small valid requests.
func createBody(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"requests":[`)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"custom_id":"r-` + itoa(i) + `","params":{"model":"claude-test",` +
			`"max_tokens":64,"messages":[{"role":"user","content":"Hello number ` + itoa(i) + `"}]}}`)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

func itoa(i int) string {
	return strconv.Itoa(i)
}

// waitEnded polls a batch until it has ended, for at most timeout.
func (h *harness) waitEnded(key, id string, timeout time.Duration) batchJSON {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b := h.decodeBatch(h.do("GET", "/v1/messages/batches/"+id, nil,
			map[string]string{"x-api-key": key}))
		if b.ProcessingStatus == "ended" {
			return b
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("batch %s did not end within %s: %+v", id, timeout, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
