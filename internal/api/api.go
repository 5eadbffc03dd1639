// Package api serves Anthropic's Message Batches API over HTTP: create, list,
// retrieve, cancel, delete and results, each also under ?beta=true. Handlers
// return errors, and one function, writeError, turns every error into the
// API's JSON error envelope with the right status.
package api

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/metrics"
	"github.com/batchd/batchd/internal/store"
)

// Defaults for [Config] fields left zero.
const (
	ExpiryDefault       = 24 * time.Hour
	MaxBodyBytesDefault = 256_000_000
	KeyCacheTTLDefault  = time.Minute
)

// Config tunes a [Server]. Zero fields take the matching …Default constant.
type Config struct {
	// PublicURL is the base URL clients reach the server at, such as
	// https://batchd.internal:8080, used to build results_url. Default: the
	// scheme and host of each request.
	PublicURL string

	// Expiry is the time from created_at to expires_at.
	Expiry time.Duration

	// MaxBodyBytes is the largest create body accepted, in bytes.
	MaxBodyBytes int64

	// KeyCacheTTL is how long a verified API key is remembered in memory
	// before the store is asked again.
	KeyCacheTTL time.Duration

	// Metrics, if not nil, counts API calls and serves GET /metrics.
	Metrics *metrics.Metrics
}

// Notifier is notified when a batch needs the engine's attention.
type Notifier interface {
	Notify()
}

// Server is the HTTP API. Create one with [New] and serve [Server.Handler].
type Server struct {
	cfg      Config
	store    store.Store
	clock    clock.Clock
	notifier Notifier
	logger   *slog.Logger
	keys     *keyCache
}

// New returns a server on st. notifier may be nil.
func New(cfg Config, st store.Store, clk clock.Clock, notifier Notifier, logger *slog.Logger) *Server {
	cfg.Expiry = cmp.Or(cfg.Expiry, ExpiryDefault)
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, MaxBodyBytesDefault)
	cfg.KeyCacheTTL = cmp.Or(cfg.KeyCacheTTL, KeyCacheTTLDefault)
	return &Server{
		cfg:      cfg,
		store:    st,
		clock:    clk,
		notifier: notifier,
		logger:   logger.With("component", "api"),
		keys:     newKeyCache(cfg.KeyCacheTTL, clk),
	}
}

// handlerFunc is an API handler: it writes a successful response itself and
// returns any error for writeError to render.
type handlerFunc func(w http.ResponseWriter, r *http.Request, caller caller) error

// Handler returns the HTTP handler for the whole API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()

	s.route(mux, "POST /v1/messages/batches", s.create)
	s.route(mux, "GET /v1/messages/batches", s.list)
	s.route(mux, "GET /v1/messages/batches/{id}", s.get)
	s.route(mux, "DELETE /v1/messages/batches/{id}", s.delete)
	s.route(mux, "POST /v1/messages/batches/{id}/cancel", s.cancel)
	s.route(mux, "GET /v1/messages/batches/{id}/results", s.results)

	// Patterns without a method are less specific than the ones above, so
	// they only catch methods that a path does not support.
	for _, path := range []string{
		"/v1/messages/batches",
		"/v1/messages/batches/{id}",
		"/v1/messages/batches/{id}/cancel",
		"/v1/messages/batches/{id}/results",
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			s.writeError(w, r, newError(errMethodNotAllowed,
				"Method %s is not allowed for %s.", r.Method, r.URL.Path))
		})
	}

	if s.cfg.Metrics != nil {
		mux.Handle("GET /metrics", s.cfg.Metrics.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, newError(batch.ErrNotFound, "Not found: %s %s", r.Method, r.URL.Path))
	})

	return s.withRequestID(s.withMetrics(s.withRecover(mux)))
}

// withMetrics counts each call by the route pattern that served it, so that
// ids in paths do not each make a new series.
func (s *Server) withMetrics(next http.Handler) http.Handler {
	if s.cfg.Metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.cfg.Metrics.ObserveHTTP(route, sw.status, time.Since(start))
	})
}

// statusWriter remembers the status code a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route registers h behind authentication and header checks.
func (s *Server) route(mux *http.ServeMux, pattern string, h handlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		err := s.checkHost(r)
		var c caller
		if err == nil {
			c, err = s.authenticate(r)
		}
		if err == nil {
			w.Header().Set("anthropic-workspace-id", c.workspaceID)
			err = h(w, r, c)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

type requestIDKey struct{}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// withRequestID gives every request an id, sent back in the request-id header
// and in error bodies.
func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := batch.NewRequestID()
		w.Header().Set("request-id", id)
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// withRecover turns a panic in a handler into a 500 response and a log line.
// http.ErrAbortHandler passes through, since it is a deliberate abort.
func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			s.writeError(w, r, fmt.Errorf("panic: %v", v))
		}()
		next.ServeHTTP(w, r)
	})
}
