package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/clock"
)

// instant is a backend that succeeds at once with no rate-limit report.
type instant struct{}

func (instant) Send(context.Context, backend.Request) (backend.Response, error) {
	return backend.Response{Limits: backend.NoLimits}, nil
}

func newBenchPolicy(inner backend.Backend, cfg Config) *Policy {
	return New(inner, cfg, clock.System{}, slog.New(slog.DiscardHandler))
}

// benchInner is an interface variable so that the compiler cannot turn the
// direct call into a static one.
var benchInner backend.Backend = instant{}

// BenchmarkSendOverhead measures one Send through a Policy against the same
// call made on the inner backend directly. It reports the direct cost, the
// added cost and their ratio. The inner backend does no work, so the ratio
// is an upper bound: a real model call takes milliseconds to minutes.
func BenchmarkSendOverhead(b *testing.B) {
	inner := benchInner
	p := newBenchPolicy(inner, Config{})
	ctx := b.Context()
	req := testRequest()

	start := time.Now()
	for range b.N {
		if _, err := inner.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	direct := time.Since(start)

	b.ResetTimer()
	for range b.N {
		if _, err := p.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	wrapped := b.Elapsed()

	b.ReportMetric(float64(direct.Nanoseconds())/float64(b.N), "direct-ns/op")
	b.ReportMetric(float64((wrapped-direct).Nanoseconds())/float64(b.N), "added-ns/op")
	b.ReportMetric(float64(wrapped)/float64(max(direct, 1)), "ratio")
}

// BenchmarkSendParallel measures Send through a Policy from GOMAXPROCS
// goroutines, where the limiter's lock is shared.
func BenchmarkSendParallel(b *testing.B) {
	p := newBenchPolicy(instant{}, Config{MaxConcurrency: 1024})
	req := testRequest()

	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := p.Send(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// rpmServer simulates a model server that accepts limit requests per
// fixed one-minute window and returns 429 beyond it. Each call advances the
// fake clock by latency, so calls are served one after another.
type rpmServer struct {
	clock   *clock.Fake
	limit   int64
	latency time.Duration
	// headers selects what the server reports: "limits" sends the
	// rate-limit report and retry-after, "retry-after" only the
	// retry-after of a 429, "none" neither.
	headers string

	mu          sync.Mutex
	windowStart time.Time
	used        int64
	accepted    int64
	rejected    int64
}

func (s *rpmServer) Send(context.Context, backend.Request) (backend.Response, error) {
	s.clock.Advance(s.latency)
	now := s.clock.Now()

	s.mu.Lock()
	defer s.mu.Unlock()

	if window := now.Truncate(time.Minute); !window.Equal(s.windowStart) {
		s.windowStart = window
		s.used = 0
	}
	reset := s.windowStart.Add(time.Minute)

	limits := backend.NoLimits
	if s.headers == "limits" {
		limits.RequestsLimit = s.limit
		limits.RequestsRemaining = max(s.limit-s.used-1, 0)
		limits.RequestsReset = reset
	}

	if s.used >= s.limit {
		s.rejected++
		e := &backend.Error{Type: backend.TypeRateLimit, StatusCode: 429, Message: "rate limited",
			Limits: limits}
		if s.headers != "none" {
			e.RetryAfter = reset.Sub(now)
		}
		return backend.Response{}, e
	}

	s.used++
	s.accepted++
	return backend.Response{Limits: limits}, nil
}

// BenchmarkRateLimitedBackend runs one client for 10 simulated minutes
// against an rpmServer that allows n requests a minute, with a 100 ms
// latency (at most 600 requests a minute from one client). It reports
// goodput (successful requests a minute, and as a share of n), the share of
// attempts rejected with 429, and the share of requests that failed after
// all retries.
//
// One op is one simulated 10-minute run. The client sends one request at a
// time because the fake clock cannot model overlapping calls, so the
// concurrency limit plays no part here.
func BenchmarkRateLimitedBackend(b *testing.B) {
	const simulated = 10 * time.Minute

	for _, headers := range []string{"limits", "retry-after", "none"} {
		for _, n := range []int64{60, 300} {
			b.Run(fmt.Sprintf("headers=%s/rpm=%d", headers, n), func(b *testing.B) {
				var accepted, rejected, requests, failed int64
				var elapsed time.Duration
				for range b.N {
					clk := clock.NewFake(testStart)
					server := &rpmServer{clock: clk, limit: n, latency: 100 * time.Millisecond,
						headers: headers}
					cfg := Config{Sleeper: NewFakeSleeper(clk)}
					p := New(server, cfg, clk, slog.New(slog.DiscardHandler))

					end := testStart.Add(simulated)
					for clk.Now().Before(end) {
						requests++
						if _, err := p.Send(b.Context(), testRequest()); err != nil {
							failed++
						}
					}
					accepted += server.accepted
					rejected += server.rejected
					elapsed += clk.Now().Sub(testStart)
				}

				// The last request may end past the 10 minutes.
				minutes := elapsed.Minutes()
				goodput := float64(accepted) / minutes
				b.ReportMetric(goodput, "goodput/min")
				b.ReportMetric(goodput/float64(n), "goodput/limit")
				b.ReportMetric(float64(rejected)/float64(accepted+rejected), "rejected/attempt")
				b.ReportMetric(float64(failed)/float64(requests), "failed/request")
			})
		}
	}
}
