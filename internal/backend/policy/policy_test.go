package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/clock"
)

var testStart = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// backendFunc adapts a function to backend.Backend.
type backendFunc func(ctx context.Context, req backend.Request) (backend.Response, error)

func (f backendFunc) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	return f(ctx, req)
}

// scripted is a backend that returns the results in its script in order and
// then succeeds. It counts its calls.
type scripted struct {
	mu     sync.Mutex
	script []error
	calls  int
}

func (s *scripted) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.calls++
	if len(s.script) == 0 {
		return okResponse(), nil
	}
	err := s.script[0]
	s.script = s.script[1:]
	if err == nil {
		return okResponse(), nil
	}
	return backend.Response{}, err
}

func (s *scripted) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func okResponse() backend.Response {
	return backend.Response{
		Message: json.RawMessage(`{"type":"message"}`),
		Limits:  backend.NoLimits,
	}
}

func rateLimited(retryAfter time.Duration) *backend.Error {
	return &backend.Error{
		Type: backend.TypeRateLimit, Message: "slow down", StatusCode: 429, RetryAfter: retryAfter,
	}
}

func overloaded() *backend.Error {
	return &backend.Error{Type: backend.TypeOverloaded, Message: "overloaded", StatusCode: 529}
}

func serverError() *backend.Error {
	return &backend.Error{Type: backend.TypeAPI, Message: "internal error", StatusCode: 500}
}

type fixture struct {
	policy  *Policy
	clock   *clock.Fake
	sleeper *FakeSleeper
}

// newFixture returns a Policy over inner on a fake clock and sleeper. Its
// jitter is fixed at 0.5 unless the test replaces it.
func newFixture(t *testing.T, inner backend.Backend, cfg Config) fixture {
	t.Helper()

	clk := clock.NewFake(testStart)
	sleeper := NewFakeSleeper(clk)
	cfg.Name = "test"
	cfg.Sleeper = sleeper

	p := New(inner, cfg, clk, slog.New(slog.DiscardHandler))
	p.jitter = func() float64 { return 0.5 }
	return fixture{policy: p, clock: clk, sleeper: sleeper}
}

func testRequest() backend.Request {
	return backend.Request{BatchID: "msgbatch_1", CustomID: "req-1", Model: "claude-test"}
}

func TestSendRetriesTemporaryErrors(t *testing.T) {
	t.Parallel()

	inner := &scripted{script: []error{rateLimited(0), overloaded(), serverError()}}
	f := newFixture(t, inner, Config{MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: time.Minute})

	resp, err := f.policy.Send(t.Context(), testRequest())
	if err != nil {
		t.Fatalf("Send: got error %v, want success", err)
	}
	if string(resp.Message) != `{"type":"message"}` {
		t.Errorf("got message %s, want the inner backend's", resp.Message)
	}
	if got := inner.callCount(); got != 4 {
		t.Errorf("got %d calls, want 4", got)
	}

	// Jitter 0.5 puts each wait at three quarters of 1s, 2s and 4s.
	want := []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second}
	got := f.sleeper.Waits()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got waits %v, want %v", got, want)
	}

	stats := f.policy.Stats()
	if stats.Attempts != 4 {
		t.Errorf("got %d attempts in stats, want 4", stats.Attempts)
	}
	if stats.Retries != 3 {
		t.Errorf("got %d retries in stats, want 3", stats.Retries)
	}
	if stats.Overloads != 2 {
		t.Errorf("got %d overloads in stats, want 2", stats.Overloads)
	}
}

func TestSendRetriesConnectionErrors(t *testing.T) {
	t.Parallel()

	reset := fmt.Errorf("read tcp 127.0.0.1:1234: %w", syscall.ECONNRESET)
	inner := &scripted{script: []error{reset, io.ErrUnexpectedEOF, context.DeadlineExceeded}}
	f := newFixture(t, inner, Config{})

	if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
		t.Fatalf("Send: got error %v, want success", err)
	}
	if got := inner.callCount(); got != 4 {
		t.Errorf("got %d calls, want 4", got)
	}
}

func TestSendReturnsLastErrorAfterMaxAttempts(t *testing.T) {
	t.Parallel()

	errs := []error{serverError(), serverError(), serverError(), serverError(), serverError()}
	inner := &scripted{script: errs}
	f := newFixture(t, inner, Config{MaxAttempts: 4})

	_, err := f.policy.Send(t.Context(), testRequest())
	if err != errs[3] {
		t.Errorf("got error %v, want the fourth attempt's error", err)
	}
	if got := inner.callCount(); got != 4 {
		t.Errorf("got %d calls, want 4", got)
	}
	if got := len(f.sleeper.Waits()); got != 3 {
		t.Errorf("got %d waits, want 3", got)
	}
	if got := f.policy.Stats().Exhausted; got != 1 {
		t.Errorf("got %d exhausted in stats, want 1", got)
	}
}

func TestSendMaxAttemptsOneDisablesRetries(t *testing.T) {
	t.Parallel()

	inner := &scripted{script: []error{overloaded()}}
	f := newFixture(t, inner, Config{MaxAttempts: 1})

	_, err := f.policy.Send(t.Context(), testRequest())
	if backend.AsError(err).Type != backend.TypeOverloaded {
		t.Errorf("got error %v, want overloaded_error", err)
	}
	if got := inner.callCount(); got != 1 {
		t.Errorf("got %d calls, want 1", got)
	}
}

func TestSendStopsRetryingWhenAsked(t *testing.T) {
	t.Parallel()

	inner := &scripted{script: []error{overloaded(), overloaded(), overloaded()}}
	f := newFixture(t, inner, Config{MaxAttempts: 5})

	stopped := false
	ctx := backend.WithRetryStop(t.Context(), func() bool { return stopped })
	stopped = true // as when the batch is canceled during the first attempt

	_, err := f.policy.Send(ctx, testRequest())
	if backend.AsError(err).Type != backend.TypeOverloaded {
		t.Errorf("got error %v, want the first attempt's overloaded_error", err)
	}
	if got := inner.callCount(); got != 1 {
		t.Errorf("got %d calls, want 1", got)
	}
	if got := len(f.sleeper.Waits()); got != 0 {
		t.Errorf("got %d waits, want none", got)
	}
}

func TestSendDoesNotRetryPermanentErrors(t *testing.T) {
	t.Parallel()

	for _, typ := range []string{
		backend.TypeInvalidRequest, backend.TypeAuthentication,
		backend.TypePermission, backend.TypeNotFound, "billing_error",
	} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()

			want := &backend.Error{Type: typ, Message: "no", StatusCode: 400}
			inner := &scripted{script: []error{want}}
			f := newFixture(t, inner, Config{})

			_, err := f.policy.Send(t.Context(), testRequest())
			if err != want {
				t.Errorf("got error %v, want %v", err, want)
			}
			if got := inner.callCount(); got != 1 {
				t.Errorf("got %d calls, want 1", got)
			}
			if got := f.sleeper.Waits(); len(got) != 0 {
				t.Errorf("got waits %v, want none", got)
			}
		})
	}
}

func TestSendHonoursRetryAfter(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
	}{
		{"longer than backoff", 30 * time.Second, 30 * time.Second},
		{"shorter than backoff", 100 * time.Millisecond, 750 * time.Millisecond},
		{"capped by max retry-after", 2 * time.Hour, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			inner := &scripted{script: []error{rateLimited(tt.retryAfter)}}
			cfg := Config{BaseDelay: time.Second, MaxRetryAfter: 10 * time.Minute}
			f := newFixture(t, inner, cfg)

			if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
				t.Fatalf("Send: got error %v, want success", err)
			}
			waits := f.sleeper.Waits()
			if len(waits) != 1 {
				t.Fatalf("got waits %v, want one", waits)
			}
			if waits[0] != tt.want {
				t.Errorf("got wait %v, want %v", waits[0], tt.want)
			}
		})
	}
}

func TestBackoffCappedAndJittered(t *testing.T) {
	t.Parallel()

	cfg := Config{BaseDelay: time.Second, MaxDelay: 8 * time.Second}
	f := newFixture(t, &scripted{}, cfg)
	p := f.policy

	// ceiling is the backoff before jitter after failed attempt n.
	ceiling := func(n int) time.Duration {
		return min(time.Second<<(n-1), 8*time.Second)
	}

	p.jitter = func() float64 { return 0 }
	for n := 1; n <= 10; n++ {
		if got, want := p.backoff(n, 0), ceiling(n)/2; got != want {
			t.Errorf("attempt %d, jitter 0: got %v, want %v", n, got, want)
		}
	}
	p.jitter = func() float64 { return 0.999999999 }
	for n := 1; n <= 10; n++ {
		got := p.backoff(n, 0)
		if got > ceiling(n) || got < ceiling(n)-time.Microsecond {
			t.Errorf("attempt %d, jitter near 1: got %v, want just under %v", n, got, ceiling(n))
		}
	}

	// With real randomness every wait stays in [d/2, d], and not all are
	// the same.
	p.jitter = New(&scripted{}, cfg, f.clock, slog.New(slog.DiscardHandler)).jitter
	seen := map[time.Duration]bool{}
	for range 200 {
		got := p.backoff(3, 0)
		if got < 2*time.Second || got > 4*time.Second {
			t.Fatalf("attempt 3: got %v, want within [2s, 4s]", got)
		}
		seen[got] = true
	}
	if len(seen) < 2 {
		t.Errorf("got %d distinct waits in 200 draws, want jitter", len(seen))
	}

	// A huge attempt number must not overflow the doubling.
	if got := p.backoff(1000, 0); got < 4*time.Second || got > 8*time.Second {
		t.Errorf("attempt 1000: got %v, want within [4s, 8s]", got)
	}
}

func TestSendCancelDuringBackoffReturnsPromptly(t *testing.T) {
	t.Parallel()

	called := make(chan struct{})
	var once sync.Once
	inner := backendFunc(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		once.Do(func() { close(called) })
		return backend.Response{}, rateLimited(time.Hour)
	})

	// The real sleeper: the wait is an hour on a runtime timer, and only
	// the cancellation can end it.
	cfg := Config{Name: "test", MaxRetryAfter: 2 * time.Hour}
	p := New(inner, cfg, clock.NewFake(testStart), slog.New(slog.DiscardHandler))

	errStop := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := p.Send(ctx, testRequest())
		done <- err
	}()

	<-called
	cancel(errStop)

	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after its context was canceled")
	}
	if !errors.Is(err, errStop) {
		t.Errorf("got error %v, want it to wrap the cancel cause", err)
	}
	var be *backend.Error
	if !errors.As(err, &be) || be.Type != backend.TypeRateLimit {
		t.Errorf("got error %v, want it to wrap the last rate_limit_error", err)
	}
}

func TestSendCancelWhileWaitingForSlot(t *testing.T) {
	t.Parallel()

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	inner := backendFunc(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		entered <- struct{}{}
		<-release
		return okResponse(), nil
	})
	f := newFixture(t, inner, Config{MaxConcurrency: 1})

	first := make(chan error, 1)
	go func() {
		_, err := f.policy.Send(t.Context(), testRequest())
		first <- err
	}()
	<-entered

	ctx, cancel := context.WithCancel(t.Context())
	second := make(chan error, 1)
	go func() {
		_, err := f.policy.Send(ctx, testRequest())
		second <- err
	}()
	waitFor(t, "second request waiting", func() bool { return f.policy.Stats().Waiting == 1 })

	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
	if got := f.policy.Stats().Waiting; got != 0 {
		t.Errorf("got %d waiting after cancel, want 0", got)
	}

	close(release)
	if err := <-first; err != nil {
		t.Errorf("first request: got error %v, want success", err)
	}

	// The canceled waiter must not have kept a slot.
	stats := f.policy.Stats()
	if stats.InFlight != 0 {
		t.Errorf("got %d in flight at the end, want 0", stats.InFlight)
	}
	if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
		t.Errorf("third request: got error %v, want success", err)
	}
}

func TestSendCanceledContextSendsNothing(t *testing.T) {
	t.Parallel()

	inner := &scripted{}
	f := newFixture(t, inner, Config{})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.policy.Send(ctx, testRequest())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
	if got := inner.callCount(); got != 0 {
		t.Errorf("got %d calls, want 0", got)
	}
}

func TestSendAppliesPerAttemptTimeout(t *testing.T) {
	t.Parallel()

	var deadlines []time.Duration
	inner := backendFunc(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return backend.Response{}, errors.New("no deadline")
		}
		deadlines = append(deadlines, time.Until(dl))
		if len(deadlines) == 1 {
			return backend.Response{}, fmt.Errorf("read body: %w", context.DeadlineExceeded)
		}
		return okResponse(), nil
	})
	f := newFixture(t, inner, Config{Timeout: time.Minute})

	if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
		t.Fatalf("Send: got error %v, want success after a retried timeout", err)
	}
	if len(deadlines) != 2 {
		t.Fatalf("got %d attempts, want 2", len(deadlines))
	}
	for i, d := range deadlines {
		if d <= 0 || d > time.Minute {
			t.Errorf("attempt %d: got deadline %v away, want within (0, 1m]", i+1, d)
		}
	}
}

func TestSendStopsWhenParentContextEnds(t *testing.T) {
	t.Parallel()

	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		calls++
		cancel()
		return backend.Response{}, fmt.Errorf("do request: %w", context.Canceled)
	})
	f := newFixture(t, inner, Config{})

	_, err := f.policy.Send(ctx, testRequest())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("got %d calls, want 1", calls)
	}
}

func TestSendLogsRetries(t *testing.T) {
	t.Parallel()

	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := clock.NewFake(testStart)
	inner := &scripted{script: []error{serverError()}}
	p := New(inner, Config{Name: "claude", Sleeper: NewFakeSleeper(clk)}, clk, logger)

	if _, err := p.Send(t.Context(), testRequest()); err != nil {
		t.Fatalf("Send: got error %v, want success", err)
	}

	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("got log %q, want one JSON line: %v", buf.String(), err)
	}
	want := map[string]any{
		"level": "DEBUG", "msg": "retrying backend request", "backend": "claude",
		"attempt": float64(2), "batch_id": "msgbatch_1", "custom_id": "req-1",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log key %s: got %v, want %v", k, line[k], v)
		}
	}
	if _, ok := line["wait_ms"].(float64); !ok {
		t.Errorf("log key wait_ms: got %v, want a number", line["wait_ms"])
	}
	if got, _ := line["err"].(string); got != serverError().Error() {
		t.Errorf("log key err: got %q, want %q", got, serverError().Error())
	}
}

func TestNewPanicsOnInvalidConfig(t *testing.T) {
	t.Parallel()

	defer func() {
		if recover() == nil {
			t.Error("New with MinConcurrency > MaxConcurrency: got no panic, want one")
		}
	}()
	New(&scripted{}, Config{MinConcurrency: 5, MaxConcurrency: 2}, clock.System{},
		slog.New(slog.DiscardHandler))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error, or "" for valid
	}{
		{"zero takes defaults", Config{}, ""},
		{"negative attempts", Config{MaxAttempts: -1}, "max attempts -1"},
		{"negative base delay", Config{BaseDelay: -time.Second}, "base delay -1s"},
		{"negative timeout", Config{Timeout: -time.Second}, "timeout -1s"},
		{"max below base", Config{BaseDelay: time.Minute, MaxDelay: time.Second}, "max delay 1s"},
		{"min concurrency negative", Config{MinConcurrency: -2}, "min concurrency -2"},
		{"max below min", Config{MinConcurrency: 8, MaxConcurrency: 4}, "max concurrency 4"},
		{"negative reserve", Config{RequestsReserve: -1}, "requests reserve -1"},
		{"negative tokens reserve", Config{TokensReserve: -3}, "tokens reserve -3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got error %v, want none", err)
			case tt.want != "" && err == nil:
				t.Errorf("got no error, want one containing %q", tt.want)
			case tt.want != "" && !bytes.Contains([]byte(err.Error()), []byte(tt.want)):
				t.Errorf("got error %q, want one containing %q", err, tt.want)
			}
		})
	}
}

// waitFor polls cond until it holds, failing the test after a few seconds.
// It is for conditions that other goroutines reach without any timer.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// counter tracks how many calls are inside a backend at once.
type counter struct {
	current, peak atomic.Int64
}

func (c *counter) enter() {
	n := c.current.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (c *counter) leave() { c.current.Add(-1) }
