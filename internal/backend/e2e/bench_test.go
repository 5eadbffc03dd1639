package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend/upstream"
	"github.com/batchd/batchd/internal/cputime"
	"github.com/batchd/batchd/internal/engine"
)

// benchTimeout bounds each benchmark batch.
const benchTimeout = 5 * time.Minute

// BenchmarkThroughput runs a batch through the whole chain against a fake
// Anthropic server that replies to every call after a fixed 200ms, with the
// engine and the backend both allowed 256 calls in flight. The ideal rate is
// 256 / 0.2s = 1,280 requests a second. One op is one batch: 5,000 requests,
// or 10,240, a whole number of rounds of 256 calls.
//
// Baseline, in the same op: a plain Go client with 256 goroutines sends the
// same number of calls to the same server first. Its rate shows what the
// machine allows, since the fake server shares the CPUs with the chain.
//
// Metrics: req/s and its fraction of the ideal; direct-req/s, the
// baseline's rate, and of-direct, req/s over it; start-ms, the time from
// starting the engine to the first call reaching the server; drift-ms, how
// much later the last call arrived than the first plus one latency per
// round of 256 calls before it; tail-ms, the time from the last reply to
// seeing the batch ended; max-inflight, the most calls the server held at
// once; and limit, the backend's adaptive limit at the end.
func BenchmarkThroughput(b *testing.B) {
	for _, requests := range []int{5000, 10240} {
		b.Run(fmt.Sprintf("requests=%d", requests), func(b *testing.B) {
			benchmarkThroughput(b, requests)
		})
	}
}

func benchmarkThroughput(b *testing.B, requests int) {
	const (
		latency     = 200 * time.Millisecond
		concurrency = 256
	)
	ideal := float64(concurrency) / latency.Seconds()
	rounds := (requests + concurrency - 1) / concurrency

	var total, direct, startDelay, drift, tail time.Duration
	maxInFlight, limit := 0, 0
	for range b.N {
		b.StopTimer()
		server := newFakeUpstream(b, func(w http.ResponseWriter, r *http.Request, c call) answer {
			time.Sleep(latency)
			return writeMessage(w, c, nil)
		})
		directStart := time.Now()
		sendDirect(b, server.server.URL, customIDs(requests), concurrency)
		direct += time.Since(directStart)
		server.reset()
		config := anthropicConfig(server.server.URL, fmt.Sprintf("concurrency: %d", concurrency))
		c := newChain(b, config, engine.Config{Concurrency: concurrency}, nil)
		bt := createBatch(b, c.store, textRequests(customIDs(requests)), nil)
		b.StartTimer()

		start := time.Now()
		ended, elapsed := c.runUntilEnded(b, bt.ID, benchTimeout)
		b.StopTimer()

		if ended.Final.Succeeded != int64(requests) {
			b.Fatalf("%d of %d requests succeeded", ended.Final.Succeeded, requests)
		}
		first, last := server.arrivalSpan()
		total += elapsed
		startDelay += first.Sub(start)
		drift += last.Sub(first) - time.Duration(rounds-1)*latency
		tail += start.Add(elapsed).Sub(last.Add(latency))
		maxInFlight = max(maxInFlight, server.peakInFlight())
		limit = policyStats(b, c.router).Limit
		b.StartTimer()
	}

	perSecond := float64(requests*b.N) / total.Seconds()
	directPerSecond := float64(requests*b.N) / direct.Seconds()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(perSecond, "req/s")
	b.ReportMetric(perSecond/ideal, "of-ideal")
	b.ReportMetric(directPerSecond, "direct-req/s")
	b.ReportMetric(perSecond/directPerSecond, "of-direct")
	b.ReportMetric(ms(startDelay), "start-ms")
	b.ReportMetric(ms(drift), "drift-ms")
	b.ReportMetric(ms(tail), "tail-ms")
	b.ReportMetric(float64(maxInFlight), "max-inflight")
	b.ReportMetric(float64(limit), "limit")
}

// arrivalSpan returns the arrival times of the first and the last call.
func (u *fakeUpstream) arrivalSpan() (time.Time, time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()

	var first, last time.Time
	for _, c := range u.calls {
		if first.IsZero() || c.arrived.Before(first) {
			first = c.arrived
		}
		if c.arrived.After(last) {
			last = c.arrived
		}
	}
	return first, last
}

func (u *fakeUpstream) peakInFlight() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.maxInFlight
}

// BenchmarkRateLimitGoodput runs a batch through the chain against a fake
// Anthropic server that accepts a fixed number of calls in each fixed window
// and returns 429 beyond them, each accepted call taking 50ms. The engine and
// the backend allow 64 calls in flight, and retries use the defaults (5
// attempts, 1s base delay). Two limits:
//
//   - window=1m: 300 calls a minute, as a real per-minute limit; a batch of
//     750 requests, so that two windows are used in full. One op takes two
//     minutes at least.
//   - window=2s: 100 calls in each 2s window, a short stand-in that crosses
//     more window edges per second; a batch of 400 requests, 8s at least.
//
// Variants: "headers" sends anthropic-ratelimit-requests-* on every reply
// and retry-after on each 429; "retry-after" sends only the retry-after;
// "none" sends a bare 429 (2s window only: with a minute's window, bare
// 429s use up the retries of most requests).
//
// Metrics: goodput, the mean number of successes per window over the windows
// before the last one used, as a fraction of the limit; rejected, the
// fraction of calls rejected with 429; failed, the fraction of requests that
// errored after their last attempt; windows, the windows used.
func BenchmarkRateLimitGoodput(b *testing.B) {
	limits := []struct {
		name      string
		perWindow int
		window    time.Duration
		requests  int
		variants  []string
	}{
		{"window=1m", 300, time.Minute, 750, []string{"headers", "retry-after"}},
		{"window=2s", 100, 2 * time.Second, 400, []string{"headers", "retry-after", "none"}},
	}
	for _, l := range limits {
		for _, variant := range l.variants {
			b.Run(l.name+"/"+variant, func(b *testing.B) {
				benchRateLimit(b, l.perWindow, l.window, l.requests, variant)
			})
		}
	}
}

// rateLimitRun is the outcome of one batch against a windowed limit.
type rateLimitRun struct {
	goodput, rejected, failed, windows float64
}

func benchRateLimit(b *testing.B, perWindow int, window time.Duration, requests int,
	variant string) {
	var sum rateLimitRun
	for range b.N {
		limit := &windowLimit{limit: perWindow, window: window}
		run := runRateLimit(b, limit, requests, variant)
		sum.goodput += run.goodput
		sum.rejected += run.rejected
		sum.failed += run.failed
		sum.windows += run.windows
	}

	n := float64(b.N)
	b.ReportMetric(sum.goodput/n, "goodput")
	b.ReportMetric(sum.rejected/n, "rejected")
	b.ReportMetric(sum.failed/n, "failed")
	b.ReportMetric(sum.windows/n, "windows")
}

// runRateLimit runs one batch of requests against a fake server that
// enforces limit and replies 429 with the hints that variant names.
func runRateLimit(b *testing.B, limit *windowLimit, requests int, variant string) rateLimitRun {
	const (
		latency     = 50 * time.Millisecond
		concurrency = 64
	)
	var mu sync.Mutex
	perWindowOK := map[int64]int{}

	server := newFakeUpstream(b, func(w http.ResponseWriter, r *http.Request, c call) answer {
		now := time.Now()
		take := limit.take(now)
		header := http.Header{}
		if variant == "headers" {
			header = requestLimitHeaders(limit.limit, take)
		}
		if !take.ok {
			if variant != "none" {
				header.Set("Retry-After", retryAfterUntil(now, take.reset))
			}
			return writeError(w, http.StatusTooManyRequests, "rate_limit_error",
				"Number of requests has exceeded your rate limit", header)
		}

		mu.Lock()
		perWindowOK[take.index]++
		mu.Unlock()
		time.Sleep(latency)
		return writeMessage(w, c, header)
	})
	config := anthropicConfig(server.server.URL, fmt.Sprintf("concurrency: %d", concurrency))
	c := newChain(b, config, engine.Config{Concurrency: concurrency}, nil)
	bt := createBatch(b, c.store, textRequests(customIDs(requests)), nil)

	ended, _ := c.runUntilEnded(b, bt.ID, benchTimeout)

	mu.Lock()
	defer mu.Unlock()
	lastWindow := int64(0)
	for index := range perWindowOK {
		lastWindow = max(lastWindow, index)
	}
	full := 0
	for index := range lastWindow {
		full += perWindowOK[index]
	}

	var run rateLimitRun
	if lastWindow > 0 {
		run.goodput = float64(full) / float64(lastWindow) / float64(limit.limit)
	}
	run.rejected = float64(server.count(http.StatusTooManyRequests)) / float64(server.total())
	run.failed = float64(ended.Final.Errored) / float64(requests)
	run.windows = float64(lastWindow + 1)
	return run
}

// BenchmarkOverhead measures what batchd adds to each upstream call. In each
// op it sends 5,000 requests to one fake Anthropic server that replies at
// once, first directly from a Go HTTP client with 64 goroutines, then as a
// batch through the whole chain with 64 calls in flight. The direct client
// uses the transport that the backends use and reads each whole reply.
//
// Metrics per call: direct-us and chain-us, wall time divided by the number
// of calls; added-us, their difference; ratio, chain over direct; and the
// process CPU time per call for each (the server's share included in both).
// The chain's time includes starting the engine and noticing the batch end,
// a few milliseconds.
func BenchmarkOverhead(b *testing.B) {
	const (
		requests    = 5000
		concurrency = 64
	)

	var direct, chained, directCPU, chainCPU time.Duration
	for range b.N {
		b.StopTimer()
		server := newFakeUpstream(b, func(w http.ResponseWriter, r *http.Request, c call) answer {
			return writeMessage(w, c, nil)
		})
		ids := customIDs(requests)
		config := anthropicConfig(server.server.URL, fmt.Sprintf("concurrency: %d", concurrency))
		c := newChain(b, config, engine.Config{Concurrency: concurrency}, nil)
		bt := createBatch(b, c.store, textRequests(ids), nil)
		b.StartTimer()

		cpu := cputime.Process()
		start := time.Now()
		sendDirect(b, server.server.URL, ids, concurrency)
		direct += time.Since(start)
		directCPU += cputime.Process() - cpu

		cpu = cputime.Process()
		ended, elapsed := c.runUntilEnded(b, bt.ID, benchTimeout)
		chained += elapsed
		chainCPU += cputime.Process() - cpu

		if ended.Final.Succeeded != requests {
			b.Fatalf("%d of %d requests succeeded", ended.Final.Succeeded, requests)
		}
	}

	calls := float64(requests * b.N)
	perCall := func(d time.Duration) float64 { return float64(d.Microseconds()) / calls }
	b.ReportMetric(perCall(direct), "direct-us")
	b.ReportMetric(perCall(chained), "chain-us")
	b.ReportMetric(perCall(chained-direct), "added-us")
	b.ReportMetric(float64(chained)/float64(direct), "ratio")
	b.ReportMetric(perCall(directCPU), "direct-cpu-us")
	b.ReportMetric(perCall(chainCPU), "chain-cpu-us")
}

// sendDirect posts textParams(id) for each id to the server's /v1/messages
// from concurrency goroutines, with the headers the anthropic backend sends.
func sendDirect(b *testing.B, baseURL string, ids []string, concurrency int) {
	client := upstream.NewHTTPClient()
	defer client.CloseIdleConnections()

	work := make(chan string)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for id := range work {
				reply, err := upstream.PostJSON(context.Background(), client,
					baseURL+"/v1/messages", http.Header{"Anthropic-Version": {"2023-06-01"}},
					textParams(id))
				if err != nil || !reply.OK() || !bytes.HasPrefix(reply.Body, []byte("{")) {
					b.Errorf("direct call for %s: status %d, error %v", id, reply.StatusCode, err)
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
}
