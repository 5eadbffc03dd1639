package policy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/clock"
)

func TestLimitHalvesOn429AndGrowsBack(t *testing.T) {
	t.Parallel()

	var fail error
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		if fail != nil {
			return backend.Response{}, fail
		}
		return okResponse(), nil
	})
	f := newFixture(t, inner, Config{MaxConcurrency: 8, MinConcurrency: 2, MaxAttempts: 1})

	steps := []struct {
		fail error
		want int
	}{
		{rateLimited(0), 4},
		{overloaded(), 2},
		{rateLimited(0), 2}, // MinConcurrency is the floor.
	}
	for i, s := range steps {
		fail = s.fail
		if _, err := f.policy.Send(t.Context(), testRequest()); err == nil {
			t.Fatalf("step %d: got success, want an error", i)
		}
		if got := f.policy.Stats().Limit; got != s.want {
			t.Fatalf("step %d: got limit %d, want %d", i, got, s.want)
		}
	}

	// A server error is no sign of overload, so it leaves the limit alone.
	fail = serverError()
	_, _ = f.policy.Send(t.Context(), testRequest())
	if got := f.policy.Stats().Limit; got != 2 {
		t.Fatalf("after a 500: got limit %d, want 2", got)
	}

	fail = nil
	previous := 2
	successes := 0
	for f.policy.Stats().Limit < 8 {
		if successes == 100 {
			t.Fatalf("limit %d after 100 successes, want it back at 8", previous)
		}
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		successes++

		got := f.policy.Stats().Limit
		if got < previous || got > previous+1 {
			t.Fatalf("after success %d: limit went from %d to %d, want +0 or +1",
				successes, previous, got)
		}
		previous = got
	}

	// Additive increase: about `limit` successes per step from 2 to 8.
	if successes < 2+3+4+5+6+7-6 {
		t.Errorf("limit grew back in %d successes, want additive growth", successes)
	}

	for range 20 {
		_, _ = f.policy.Send(t.Context(), testRequest())
	}
	if got := f.policy.Stats().Limit; got != 8 {
		t.Errorf("got limit %d after more successes, want it to stay at MaxConcurrency 8", got)
	}
}

func TestBurstOf429sHalvesLimitOnce(t *testing.T) {
	t.Parallel()

	const burst = 10
	var arrived sync.WaitGroup
	arrived.Add(burst)
	gate := make(chan struct{})
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		arrived.Done()
		<-gate
		return backend.Response{}, rateLimited(0)
	})
	f := newFixture(t, inner, Config{MaxConcurrency: 16, MaxAttempts: 1})

	var done sync.WaitGroup
	for range burst {
		done.Go(func() {
			_, _ = f.policy.Send(t.Context(), testRequest())
		})
	}

	// All ten are in flight before any response, as in one overload episode.
	arrived.Wait()
	close(gate)
	done.Wait()

	if got := f.policy.Stats().Limit; got != 8 {
		t.Errorf("got limit %d after a burst of %d 429s, want 8 (one halving)", got, burst)
	}

	// A 429 to a request sent after the decrease lowers it again.
	inner2 := &scripted{script: []error{rateLimited(0)}}
	f.policy.inner = inner2
	_, _ = f.policy.Send(t.Context(), testRequest())
	if got := f.policy.Stats().Limit; got != 4 {
		t.Errorf("got limit %d after a later 429, want 4", got)
	}
}

func TestConcurrencyNeverExceedsLimit(t *testing.T) {
	t.Parallel()

	const callers = 40
	var inside counter
	release := make(chan struct{})
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		inside.enter()
		defer inside.leave()
		<-release
		return okResponse(), nil
	})
	f := newFixture(t, inner, Config{MaxConcurrency: 4})

	var done sync.WaitGroup
	for range callers {
		done.Go(func() {
			if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
				t.Errorf("Send: %v", err)
			}
		})
	}

	waitFor(t, "all callers blocked or in flight", func() bool {
		s := f.policy.Stats()
		return s.InFlight == 4 && s.Waiting == callers-4
	})
	if got := inside.current.Load(); got != 4 {
		t.Errorf("got %d calls inside the backend, want 4", got)
	}

	close(release)
	done.Wait()

	if got := inside.peak.Load(); got != 4 {
		t.Errorf("got a peak of %d concurrent calls, want 4", got)
	}
	stats := f.policy.Stats()
	if stats.InFlight != 0 || stats.Waiting != 0 {
		t.Errorf("got %d in flight and %d waiting at the end, want 0 and 0",
			stats.InFlight, stats.Waiting)
	}
}

func TestConcurrencyFollowsLoweredLimit(t *testing.T) {
	t.Parallel()

	const callers = 30
	var inside counter
	var mu sync.Mutex
	first := true
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		inside.enter()
		defer inside.leave()

		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			return backend.Response{}, overloaded()
		}
		return okResponse(), nil
	})
	f := newFixture(t, inner, Config{MaxConcurrency: 4, MaxAttempts: 1})

	// The first request lowers the limit to 2.
	_, _ = f.policy.Send(t.Context(), testRequest())
	if got := f.policy.Stats().Limit; got != 2 {
		t.Fatalf("got limit %d, want 2", got)
	}

	// Successes grow it back, but never past 4, however many callers wait.
	var done sync.WaitGroup
	for range callers {
		done.Go(func() {
			for range 5 {
				_, _ = f.policy.Send(t.Context(), testRequest())
			}
		})
	}
	done.Wait()

	if got := inside.peak.Load(); got > 4 {
		t.Errorf("got a peak of %d concurrent calls, want at most 4", got)
	}
}

func TestLimiterServesWaitersInOrder(t *testing.T) {
	t.Parallel()

	l := newLimiter(1, 1)
	epoch, err := l.acquire(t.Context())
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}

	const waiters = 5
	order := make(chan int, waiters)
	var done sync.WaitGroup
	for i := range waiters {
		done.Go(func() {
			e, err := l.acquire(t.Context())
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			order <- i
			l.release(e, outcomeNeutral)
		})
		// Queue them one at a time so their arrival order is known.
		waitFor(t, "waiter queued", func() bool { return l.stats().waiting == i+1 })
	}

	l.release(epoch, outcomeNeutral)
	done.Wait()
	close(order)

	want := 0
	for got := range order {
		if got != want {
			t.Errorf("got waiter %d served, want %d", got, want)
		}
		want++
	}
}

func TestLimiterCanceledWaiterLeavesQueue(t *testing.T) {
	t.Parallel()

	l := newLimiter(1, 1)
	epoch, err := l.acquire(t.Context())
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx)
		result <- err
	}()
	waitFor(t, "waiter queued", func() bool { return l.stats().waiting == 1 })
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}

	l.release(epoch, outcomeNeutral)
	s := l.stats()
	if s.inFlight != 0 || s.waiting != 0 {
		t.Errorf("got %d in flight and %d waiting, want 0 and 0", s.inFlight, s.waiting)
	}
}

func TestPacingWaitsUntilResetWhenNoneRemain(t *testing.T) {
	t.Parallel()

	var f fixture
	var sentAt []time.Time
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		now := f.clock.Now()
		sentAt = append(sentAt, now)
		resp := okResponse()
		if len(sentAt) == 1 {
			resp.Limits.RequestsLimit = 50
			resp.Limits.RequestsRemaining = 0
			resp.Limits.RequestsReset = now.Add(30 * time.Second)
		}
		return resp, nil
	})
	f = newFixture(t, inner, Config{})

	for range 2 {
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}

	if got, want := sentAt[1], testStart.Add(30*time.Second); got.Before(want) {
		t.Errorf("second send at %v, want no earlier than the reset at %v", got, want)
	}
	waits := f.sleeper.Waits()
	if len(waits) != 1 || waits[0] != 30*time.Second {
		t.Errorf("got waits %v, want [30s]", waits)
	}
	if got := f.policy.Stats().PacedWaits; got != 1 {
		t.Errorf("got %d paced waits in stats, want 1", got)
	}
}

func TestPacingCountsSendsAgainstRemaining(t *testing.T) {
	t.Parallel()

	var f fixture
	calls := 0
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		calls++
		resp := okResponse()
		if calls == 1 {
			resp.Limits.RequestsRemaining = 3
			resp.Limits.RequestsReset = f.clock.Now().Add(time.Minute)
		}
		return resp, nil
	})
	f = newFixture(t, inner, Config{})

	// One send brings the report, three more use up what it left, and the
	// fifth waits for the reset.
	for i := range 5 {
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send %d: %v", i+1, err)
		}
		wantWaits := 0
		if i == 4 {
			wantWaits = 1
		}
		if got := len(f.sleeper.Waits()); got != wantWaits {
			t.Fatalf("after send %d: got %d waits, want %d", i+1, got, wantWaits)
		}
	}
	if got := f.sleeper.Waits()[0]; got != time.Minute {
		t.Errorf("got wait %v, want 1m", got)
	}
}

func TestPacingKeepsReserve(t *testing.T) {
	t.Parallel()

	var f fixture
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		resp := okResponse()
		resp.Limits.RequestsRemaining = 2
		resp.Limits.RequestsReset = f.clock.Now().Add(10 * time.Second)
		return resp, nil
	})
	f = newFixture(t, inner, Config{RequestsReserve: 2})

	for range 2 {
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	waits := f.sleeper.Waits()
	if len(waits) != 1 || waits[0] != 10*time.Second {
		t.Errorf("got waits %v, want [10s]", waits)
	}
}

func TestPacingWaitsForTokens(t *testing.T) {
	t.Parallel()

	var f fixture
	calls := 0
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		calls++
		resp := okResponse()
		if calls == 1 {
			resp.Limits.TokensRemaining = 0
			resp.Limits.TokensReset = f.clock.Now().Add(7 * time.Second)
		}
		return resp, nil
	})
	f = newFixture(t, inner, Config{})

	for range 2 {
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	waits := f.sleeper.Waits()
	if len(waits) != 1 || waits[0] != 7*time.Second {
		t.Errorf("got waits %v, want [7s]", waits)
	}
}

func TestPacingHoldIsCapped(t *testing.T) {
	t.Parallel()

	var f fixture
	calls := 0
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		calls++
		resp := okResponse()
		if calls == 1 {
			resp.Limits.RequestsRemaining = 0
			resp.Limits.RequestsReset = f.clock.Now().Add(24 * time.Hour)
		}
		return resp, nil
	})
	f = newFixture(t, inner, Config{MaxRetryAfter: time.Minute})

	for range 2 {
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	waits := f.sleeper.Waits()
	if len(waits) != 1 || waits[0] != time.Minute {
		t.Errorf("got waits %v, want [1m]", waits)
	}
}

func TestPacingIgnoresLimitsWithoutReset(t *testing.T) {
	t.Parallel()

	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		// A zero Limits reads as 0 remaining but carries no reset time.
		return backend.Response{Message: []byte(`{}`)}, nil
	})
	f := newFixture(t, inner, Config{})

	for range 3 {
		if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if got := f.sleeper.Waits(); len(got) != 0 {
		t.Errorf("got waits %v, want none", got)
	}
}

func TestRetryAfterOn429HoldsOtherSends(t *testing.T) {
	t.Parallel()

	var f fixture
	var sentAt []time.Time
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		sentAt = append(sentAt, f.clock.Now())
		if len(sentAt) == 1 {
			return backend.Response{}, rateLimited(20 * time.Second)
		}
		return okResponse(), nil
	})
	f = newFixture(t, inner, Config{MaxAttempts: 1})

	if _, err := f.policy.Send(t.Context(), testRequest()); err == nil {
		t.Fatal("first Send: got success, want the 429")
	}
	if _, err := f.policy.Send(t.Context(), testRequest()); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if got, want := sentAt[1], testStart.Add(20*time.Second); got.Before(want) {
		t.Errorf("second send at %v, want no earlier than %v", got, want)
	}
}

// blockingSleeper waits until its context ends and counts its calls.
type blockingSleeper struct{ calls chan time.Duration }

func (s blockingSleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.calls <- d
	<-ctx.Done()
	return context.Cause(ctx)
}

func TestPacingCancelDuringHold(t *testing.T) {
	t.Parallel()

	clk := clock.NewFake(testStart)
	calls := 0
	inner := backendFunc(func(context.Context, backend.Request) (backend.Response, error) {
		calls++
		resp := okResponse()
		resp.Limits.RequestsRemaining = 0
		resp.Limits.RequestsReset = clk.Now().Add(time.Minute)
		return resp, nil
	})
	sleeper := blockingSleeper{calls: make(chan time.Duration, 1)}
	p := New(inner, Config{Sleeper: sleeper}, clk, slog.New(slog.DiscardHandler))
	if _, err := p.Send(t.Context(), testRequest()); err != nil {
		t.Fatalf("Send: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() {
		_, err := p.Send(ctx, testRequest())
		result <- err
	}()
	if got := <-sleeper.calls; got != time.Minute {
		t.Errorf("got a hold of %v, want 1m", got)
	}
	if got := p.Stats().InFlight; got != 1 {
		t.Errorf("got %d in flight during the hold, want 1", got)
	}

	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("got %d calls, want 1", calls)
	}
	if got := p.Stats().InFlight; got != 0 {
		t.Errorf("got %d in flight after cancel, want the slot released", got)
	}
}

func TestSleepers(t *testing.T) {
	t.Parallel()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := (RealSleeper{}).Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("RealSleeper with an ended context: got %v, want context.Canceled", err)
	}
	if err := (RealSleeper{}).Sleep(t.Context(), time.Microsecond); err != nil {
		t.Errorf("RealSleeper 1µs: got %v, want nil", err)
	}
}
