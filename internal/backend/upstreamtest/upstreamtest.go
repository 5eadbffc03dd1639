// Package upstreamtest provides a recording fake model server for the tests
// of the backends that call one over HTTP.
package upstreamtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// Request is the part of one request that the fake server records.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// Start starts a loopback server that records each request and then
// responds with reply. It returns the server, closed when the test ends, and
// a function that returns the requests received so far.
func Start(t *testing.T, reply http.HandlerFunc) (*httptest.Server, func() []Request) {
	t.Helper()

	var (
		mu       sync.Mutex
		requests []Request
	)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake upstream: read body: %v", err)
		}

		mu.Lock()
		requests = append(requests, Request{
			Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body,
		})
		mu.Unlock()

		reply(w, r)
	}))
	t.Cleanup(server.Close)

	return server, func() []Request {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(requests)
	}
}

// Reply returns a handler that sends status, headers and body. The
// Content-Type is application/json unless headers set another.
func Reply(status int, headers map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}
