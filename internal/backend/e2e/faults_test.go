package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/engine"
)

// batchSize is the number of requests in each fault test's batch.
const batchSize = 200

// scenario is one batch of generated requests that ran through the chain
// against a fake Anthropic upstream, with what both sides recorded.
type scenario struct {
	upstream *fakeUpstream
	chain    *chain
	ids      []string
	ended    batch.Batch
	results  map[string]resultLine
	calls    map[string][]call
}

// runScenario runs a batch of batchSize requests through a chain whose
// backend is configured by policy and whose upstream replies with respond.
// It checks what holds for every scenario: one result per request, counts
// that add up, no slot left held, every attempt of the policy seen by the
// upstream exactly once, at most maxAttempts calls per request, and for each
// request exactly one call that returned a Message if it succeeded (the one
// its result holds) and none if it errored.
func runScenario(t *testing.T, policy string, maxAttempts int, respond responder) *scenario {
	t.Helper()
	return runScenarioWith(t, engine.Config{Concurrency: 64, ClaimSize: 100}, policy, maxAttempts,
		respond)
}

// runScenarioWith is [runScenario] with the given engine configuration.
func runScenarioWith(t *testing.T, cfg engine.Config, policy string, maxAttempts int,
	respond responder) *scenario {
	t.Helper()

	upstream := newFakeUpstream(t, respond)
	c := newChain(t, anthropicConfig(upstream.server.URL, policy), cfg, nil)
	ids := customIDs(batchSize)
	b := createBatch(t, c.store, textRequests(ids), nil)

	ended, _ := c.runUntilEnded(t, b.ID, endTimeout)
	s := &scenario{
		upstream: upstream,
		chain:    c,
		ids:      ids,
		ended:    ended,
		results:  checkOneResultEach(t, ended, c.results(t, b.ID), ids),
		calls:    upstream.byID(),
	}
	checkPolicyIdle(t, c.router)

	stats := policyStats(t, c.router)
	if got := uint64(upstream.total()); got != stats.Attempts {
		t.Errorf("upstream received %d calls, policy counted %d attempts", got, stats.Attempts)
	}
	for id := range s.calls {
		if _, ok := s.results[id]; !ok {
			t.Errorf("upstream received calls for %q, which has no single result", id)
		}
	}

	for _, id := range ids {
		calls := s.calls[id]
		if len(calls) > maxAttempts {
			t.Errorf("%s: upstream received %d calls, want at most max_attempts %d",
				id, len(calls), maxAttempts)
		}

		var delivered []call
		for _, c := range calls {
			if c.message {
				delivered = append(delivered, c)
			}
		}
		res := s.results[id]
		switch {
		case res.outcome == batch.OutcomeSucceeded && len(delivered) != 1:
			t.Errorf("%s succeeded, but the upstream returned %d Messages for it, want 1",
				id, len(delivered))
		case res.outcome == batch.OutcomeSucceeded:
			got := decodeJSON[resultMessage](t, res.body).ID
			if want := messageID(id, delivered[0].attempt); got != want {
				t.Errorf("%s: result holds Message %s, want %s", id, got, want)
			}
		case len(delivered) != 0:
			t.Errorf("%s ended %s, but the upstream returned %d Messages for it",
				id, res.outcome, len(delivered))
		}
	}
	return s
}

// checkAllSucceeded checks that every request succeeded on exactly the given
// attempt.
func (s *scenario) checkAllSucceeded(t *testing.T, attempt int) {
	t.Helper()

	for _, id := range s.ids {
		if got := s.results[id].outcome; got != batch.OutcomeSucceeded {
			t.Errorf("%s: outcome %s, want succeeded", id, got)
			continue
		}
		if got := len(s.calls[id]); got != attempt {
			t.Errorf("%s: upstream received %d calls, want %d", id, got, attempt)
		}
	}
}

// checkAllErrored checks that every request errored with the given error
// type and message after exactly attempts calls. An empty message is not
// checked, and a message ending in "…" is checked as a prefix.
func (s *scenario) checkAllErrored(t *testing.T, attempts int, errType, message string) {
	t.Helper()

	for _, id := range s.ids {
		res := s.results[id]
		if res.outcome != batch.OutcomeErrored {
			t.Errorf("%s: outcome %s, want errored", id, res.outcome)
			continue
		}
		if got := len(s.calls[id]); got != attempts {
			t.Errorf("%s: upstream received %d calls, want %d", id, got, attempts)
		}

		e := decodeJSON[resultError](t, res.body)
		if e.Type != "error" {
			t.Errorf("%s: error envelope type %q, want error", id, e.Type)
		}
		if e.Error.Type != errType {
			t.Errorf("%s: error type %q, want %q", id, e.Error.Type, errType)
		}
		prefix, isPrefix := strings.CutSuffix(message, "…")
		switch {
		case message == "":
		case isPrefix && !strings.HasPrefix(e.Error.Message, prefix):
			t.Errorf("%s: error message %q, want it to start with %q", id, e.Error.Message, prefix)
		case !isPrefix && e.Error.Message != message:
			t.Errorf("%s: error message %q, want %q", id, e.Error.Message, message)
		}
	}
}

// checkGap checks that each request's call number attempt arrived at least
// wait after the call before it.
func (s *scenario) checkGap(t *testing.T, attempt int, wait time.Duration) {
	t.Helper()

	for _, id := range s.ids {
		calls := s.calls[id]
		if len(calls) < attempt {
			continue // reported by checkAllSucceeded or checkAllErrored
		}
		if gap := calls[attempt-1].arrived.Sub(calls[attempt-2].arrived); gap < wait {
			t.Errorf("%s: call %d arrived %v after call %d, want at least %v",
				id, attempt, gap, attempt-1, wait)
		}
	}
}

// quickRetry is a retry section whose backoff is far shorter than the waits
// that the tests expect from the server, so that those waits can only come
// from honouring it.
const quickRetry = "retry: {max_attempts: 3, base_delay: 1ms, max_delay: 2ms}"

func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		header string
		value  string
		wait   time.Duration
	}{
		{"retry-after seconds", "Retry-After", "0.25", 250 * time.Millisecond},
		{"retry-after-ms", "Retry-After-Ms", "150", 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			// Every first attempt is rejected, so each round of requests
			// would halve the adaptive limit and pay one hold of the
			// retry-after. The floor keeps the test to a few rounds.
			header := http.Header{tt.header: {tt.value}}
			policy := "concurrency: 64\nmin_concurrency: 64\n" + quickRetry
			s := runScenario(t, policy, 3,
				func(w http.ResponseWriter, r *http.Request, c call) answer {
					if c.attempt == 1 {
						return writeError(w, http.StatusTooManyRequests, "rate_limit_error",
							"Number of requests has exceeded your rate limit", header)
					}
					return writeMessage(w, c, nil)
				})

			s.checkAllSucceeded(t, 2)
			s.checkGap(t, 2, tt.wait)
			if got, want := s.upstream.count(http.StatusTooManyRequests), batchSize; got != want {
				t.Errorf("upstream sent %d 429s, want %d", got, want)
			}
		})
	}
}

func TestServerErrorsRetried(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		status  int
		errType string
		message string
	}{
		{"overloaded 529", 529, "overloaded_error", "Overloaded"},
		{"api_error 500", http.StatusInternalServerError, "api_error", "Internal server error"},
	}
	for _, tt := range tests {
		fail := func(w http.ResponseWriter) answer {
			return writeError(w, tt.status, tt.errType, tt.message, nil)
		}

		t.Run(tt.name+" twice", func(t *testing.T) {
			t.Parallel()

			s := runScenario(t, "retry: {max_attempts: 4, base_delay: 1ms, max_delay: 4ms}", 4,
				func(w http.ResponseWriter, r *http.Request, c call) answer {
					if c.attempt <= 2 {
						return fail(w)
					}
					return writeMessage(w, c, nil)
				})

			s.checkAllSucceeded(t, 3)
			stats := policyStats(t, s.chain.router)
			if stats.Exhausted != 0 {
				t.Errorf("policy exhausted %d requests, want 0", stats.Exhausted)
			}
		})

		t.Run(tt.name+" always", func(t *testing.T) {
			t.Parallel()

			const budget = 3
			s := runScenario(t, quickRetry, budget,
				func(w http.ResponseWriter, r *http.Request, c call) answer { return fail(w) })

			s.checkAllErrored(t, budget, tt.errType, tt.message)
			stats := policyStats(t, s.chain.router)
			if stats.Exhausted != batchSize {
				t.Errorf("policy exhausted %d requests, want %d", stats.Exhausted, batchSize)
			}
			if want := uint64(batchSize * (budget - 1)); stats.Retries != want {
				t.Errorf("policy retried %d times, want %d", stats.Retries, want)
			}
		})
	}
}

func TestHangPastTimeout(t *testing.T) {
	t.Parallel()

	// The server cannot see when an attempt started, since dialing and
	// sending take part of the timeout, so the test checks that the client
	// abandoned each hung call rather than a gap between arrivals. Every
	// hung call costs its connection, and under the race detector 64 fresh
	// connections at once take up to about 150ms to deliver their calls on
	// two cores, so the timeout is well above that.
	const policy = "concurrency: 64\ntimeout: 1s\n"
	cfg := engine.Config{Concurrency: 64, ClaimSize: 100}
	checkAbandoned := func(t *testing.T, s *scenario, attempts int) {
		t.Helper()
		for _, id := range s.ids {
			for _, c := range s.calls[id] {
				if c.attempt <= attempts && !c.abandoned {
					t.Errorf("%s: call %d was not abandoned by the client within %v",
						id, c.attempt, maxHang)
				}
			}
		}
	}

	t.Run("once", func(t *testing.T) {
		t.Parallel()

		s := runScenarioWith(t, cfg, policy+quickRetry, 3,
			func(w http.ResponseWriter, r *http.Request, c call) answer {
				if c.attempt == 1 {
					return hang(r)
				}
				return writeMessage(w, c, nil)
			})

		s.checkAllSucceeded(t, 2)
		checkAbandoned(t, s, 1)
	})

	t.Run("always", func(t *testing.T) {
		t.Parallel()

		const budget = 2
		s := runScenarioWith(t, cfg,
			policy+"retry: {max_attempts: 2, base_delay: 1ms, max_delay: 2ms}", budget, func(w http.ResponseWriter, r *http.Request, c call) answer { return hang(r) })

		s.checkAllErrored(t, budget, "timeout_error", "the model did not respond in time…")
		checkAbandoned(t, s, budget)
	})
}

func TestConnectionReset(t *testing.T) {
	t.Parallel()

	s := runScenario(t, quickRetry, 3,
		func(w http.ResponseWriter, r *http.Request, c call) answer {
			if c.attempt == 1 {
				return resetConnection(t, w)
			}
			return writeMessage(w, c, nil)
		})

	s.checkAllSucceeded(t, 2)
}

func TestMalformedMessage(t *testing.T) {
	t.Parallel()

	malformed := func(w http.ResponseWriter) answer {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"msg_broken","type":"message","content":[`))
		return answer{status: http.StatusOK}
	}

	t.Run("once", func(t *testing.T) {
		t.Parallel()

		s := runScenario(t, quickRetry, 3,
			func(w http.ResponseWriter, r *http.Request, c call) answer {
				if c.attempt == 1 {
					return malformed(w)
				}
				return writeMessage(w, c, nil)
			})

		s.checkAllSucceeded(t, 2)
	})

	t.Run("always", func(t *testing.T) {
		t.Parallel()

		const budget = 3
		s := runScenario(t, quickRetry, budget,
			func(w http.ResponseWriter, r *http.Request, c call) answer { return malformed(w) })

		s.checkAllErrored(t, budget, "api_error",
			"the model server returned an invalid Message: the body is not valid JSON…")
	})
}

func TestRateLimitHeadersPacing(t *testing.T) {
	t.Parallel()

	// 200 requests at 25 per 500ms window need 8 windows, so the test takes
	// 3.5s at least. The chain runs this batch faster than that even under
	// the race detector, so pacing has to hold sends. The concurrency is
	// below a window's limit, so each window's reports arrive before it runs
	// out.
	const concurrency = 16

	tests := []struct {
		name    string
		headers bool
		reserve int
		// maxPerWindow bounds the 429s in each window; -1 means no bound.
		maxPerWindow int
	}{
		// A report replaces the count of sends since the previous report,
		// so the calls still in flight when it arrives are not counted
		// against it, and about concurrency-1 calls can overshoot each
		// window. Reports that are read in another order than the server
		// wrote them add to that, so the bound is not exact.
		{"no reserve", true, 0, concurrency - 1},
		// A reserve of the concurrency covers the calls in flight, which
		// leaves the reports read out of order.
		{"reserve of concurrency", true, concurrency, 1},
		// Without rate-limit headers only the retry-after of each 429
		// holds sends, so every window ends in 429s.
		{"retry-after only", false, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			limit := &windowLimit{limit: 25, window: 500 * time.Millisecond}
			policy := fmt.Sprintf("concurrency: %d\npacing: {requests_reserve: %d}\n"+
				"retry: {max_attempts: 5, base_delay: 1ms, max_delay: 2ms}", concurrency, tt.reserve)
			s := runScenario(t, policy, 5, func(w http.ResponseWriter, r *http.Request, c call) answer {
				now := time.Now()
				take := limit.take(now)
				header := http.Header{}
				if tt.headers {
					header = requestLimitHeaders(limit.limit, take)
				}
				if !take.ok {
					header.Set("Retry-After", retryAfterUntil(now, take.reset))
					return writeError(w, http.StatusTooManyRequests, "rate_limit_error",
						"Number of requests has exceeded your rate limit", header)
				}
				time.Sleep(2 * time.Millisecond)
				return writeMessage(w, c, header)
			})

			for _, id := range s.ids {
				if got := s.results[id].outcome; got != batch.OutcomeSucceeded {
					t.Errorf("%s: outcome %s, want succeeded", id, got)
				}
			}

			stats := policyStats(t, s.chain.router)
			if stats.PacedWaits == 0 {
				t.Errorf("policy never held a send for the rate-limit reset")
			}

			rejected := s.upstream.count(http.StatusTooManyRequests)
			windows := int(limit.index) + 1
			t.Logf("429s: %d of %d calls over %d windows", rejected, s.upstream.total(), windows)
			if maxRejected := tt.maxPerWindow * windows; tt.maxPerWindow >= 0 && rejected > maxRejected {
				t.Errorf("upstream sent %d 429s in %d windows, want at most %d",
					rejected, windows, maxRejected)
			}
		})
	}
}
