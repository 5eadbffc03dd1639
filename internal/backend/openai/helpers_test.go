package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"

	"github.com/batchd/batchd/internal/apitest/openapi"
	"github.com/batchd/batchd/internal/backend"
)

// received is what a fake upstream saw of one request.
type received struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// fakeUpstream starts a loopback server that records each request and responds
// with reply. It returns the server and a function that returns the requests
// received so far.
func fakeUpstream(t *testing.T, reply http.HandlerFunc) (*httptest.Server, func() []received) {
	t.Helper()

	var mu sync.Mutex
	var requests []received

	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake upstream: read body: %v", err)
		}

		mu.Lock()
		requests = append(requests, received{
			method: r.Method,
			path:   r.URL.Path,
			header: r.Header.Clone(),
			body:   body,
		})
		mu.Unlock()

		reply(w, r)
	}))
	t.Cleanup(server.Close)

	return server, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), requests...)
	}
}

// replyWith returns a handler that sends status, headers and body.
func replyWith(status int, headers map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func newTestBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()

	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return b
}

// sendError calls Send with params and returns its *backend.Error, failing
// the test when Send succeeds or returns another kind of error.
func sendError(t *testing.T, b *Backend, params string) *backend.Error {
	t.Helper()

	_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(params)})
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("Send error = %v (%T), want a *backend.Error", err, err)
	}
	return be
}

// jsonEqual reports whether a and b hold the same JSON value, ignoring
// formatting and the order of object keys.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()

	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// checkValidMessage checks a translated reply against the Message schema of
// the Messages API's OpenAPI document.
func checkValidMessage(t *testing.T, body []byte) {
	t.Helper()

	if err := openapi.Load(t).Message(body); err != nil {
		t.Errorf("translated reply is not a valid Message: %v\n%s", err, body)
	}
}
