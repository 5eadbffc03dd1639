package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/clock"
)

// Policy is a [backend.Backend] that sends each request through another
// backend with retries, an adaptive concurrency limit and pacing. It is safe
// for concurrent use.
type Policy struct {
	inner   backend.Backend
	cfg     Config
	clock   clock.Clock
	logger  *slog.Logger
	limiter *limiter
	pacer   *pacer

	// jitter returns a number in [0, 1). Tests replace it.
	jitter func() float64

	attempts    atomic.Uint64
	retries     atomic.Uint64
	overloads   atomic.Uint64
	pacedWaits  atomic.Uint64
	exhaustions atomic.Uint64
}

// Stats is a snapshot of a Policy for metrics.
type Stats struct {
	// Limit is the current adaptive concurrency limit.
	Limit int
	// MaxConcurrency is the configured ceiling of Limit.
	MaxConcurrency int
	// InFlight is the number of requests that hold a slot: being sent, or
	// waiting for a pacing hold to end.
	InFlight int
	// Waiting is the number of requests waiting for a slot.
	Waiting int

	// Attempts counts the attempts sent to the backend.
	Attempts uint64
	// Retries counts the retries started after their backoff.
	Retries uint64
	// Overloads counts 429 and 529 responses.
	Overloads uint64
	// PacedWaits counts the waits for a rate-limit reset before a send.
	PacedWaits uint64
	// Exhausted counts the requests that failed after their last attempt.
	Exhausted uint64
}

// New returns a Policy that sends through inner. Zero fields of cfg take their
// defaults. New panics if cfg is invalid, so callers that take cfg from a
// user check it with [Config.Validate] first.
func New(inner backend.Backend, cfg Config, clk clock.Clock, logger *slog.Logger) *Policy {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("policy: invalid config for backend %q: %v", cfg.Name, err))
	}
	cfg = cfg.WithDefaults()

	return &Policy{
		inner:   inner,
		cfg:     cfg,
		clock:   clk,
		logger:  logger.With(slog.String("backend", cfg.Name)),
		limiter: newLimiter(cfg.MinConcurrency, cfg.MaxConcurrency),
		pacer:   newPacer(cfg),
		jitter:  rand.Float64,
	}
}

// Send sends req through the inner backend, retrying temporary failures. It
// returns the first success, the first error that is not temporary, or the
// last error once [Config.MaxAttempts] attempts have failed. If ctx ends
// while Send waits, the error wraps the context's cause and, after a failed
// attempt, that attempt's error too.
func (p *Policy) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	var lastErr error
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err := p.waitBeforeRetry(ctx, req, attempt, lastErr); err != nil {
				return backend.Response{}, err
			}
			p.retries.Add(1)
		}

		resp, err := p.attempt(ctx, req, lastErr)
		if err == nil {
			return resp, nil
		}
		lastErr = err

		be := backend.AsError(err)
		switch {
		case !be.Temporary():
			return backend.Response{}, err
		case ctx.Err() != nil:
			// The caller's context ended, so a retry could not be sent.
			return backend.Response{}, err
		case backend.RetryStopped(ctx):
			// The caller no longer wants the request, as when its batch
			// was canceled: the failed attempt is its last.
			return backend.Response{}, err
		case attempt >= p.cfg.MaxAttempts:
			p.exhaustions.Add(1)
			p.logger.WarnContext(ctx, "backend request failed on its last attempt",
				slog.String("batch_id", req.BatchID),
				slog.String("custom_id", req.CustomID),
				slog.Int("attempt", attempt),
				slog.String("err", err.Error()))
			return backend.Response{}, err
		}
	}
}

// Stats returns a snapshot of the policy's limit, load and counters.
func (p *Policy) Stats() Stats {
	ls := p.limiter.stats()
	return Stats{
		Limit:          ls.limit,
		MaxConcurrency: p.cfg.MaxConcurrency,
		InFlight:       ls.inFlight,
		Waiting:        ls.waiting,
		Attempts:       p.attempts.Load(),
		Retries:        p.retries.Load(),
		Overloads:      p.overloads.Load(),
		PacedWaits:     p.pacedWaits.Load(),
		Exhausted:      p.exhaustions.Load(),
	}
}

// attempt sends req once: it takes a slot, waits out any pacing hold, sends
// with the per-attempt timeout and reports the outcome. lastErr is the
// previous attempt's error, wrapped into the error returned when ctx ends
// before the send.
func (p *Policy) attempt(
	ctx context.Context, req backend.Request, lastErr error,
) (backend.Response, error) {
	epoch, err := p.limiter.acquire(ctx)
	if err != nil {
		return backend.Response{}, stopError("wait for a concurrency slot", err, lastErr)
	}

	seq, err := p.pace(ctx)
	if err != nil {
		p.limiter.release(epoch, outcomeNeutral)
		return backend.Response{}, stopError("wait for the rate limit to reset", err, lastErr)
	}

	p.attempts.Add(1)
	attemptCtx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	resp, err := p.inner.Send(attemptCtx, req)
	cancel()

	p.record(ctx, epoch, seq, resp, err)
	return resp, err
}

// pace waits until the pacer admits a send and returns the send's number.
func (p *Policy) pace(ctx context.Context) (int64, error) {
	for {
		wait, seq, room := p.pacer.admit(p.clock.Now())
		if wait <= 0 {
			return seq, nil
		}

		p.pacedWaits.Add(1)
		p.logger.DebugContext(ctx, "holding send until the rate limit resets",
			slog.Int64("wait_ms", wait.Milliseconds()))
		if err := p.hold(ctx, wait, room); err != nil {
			return 0, err
		}
	}
}

// errRoom ends a hold early: the pacer found room for more sends.
var errRoom = errors.New("rate limit has room again")

// hold sleeps for wait, or until room is closed if it is not nil.
func (p *Policy) hold(ctx context.Context, wait time.Duration, room <-chan struct{}) error {
	if room == nil {
		return p.cfg.Sleeper.Sleep(ctx, wait)
	}

	holdCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-room:
			cancel(errRoom)
		case <-holdCtx.Done():
		}
	}()

	err := p.cfg.Sleeper.Sleep(holdCtx, wait)
	if errors.Is(err, errRoom) {
		return nil
	}
	return err
}

// record frees the attempt's slot and feeds its result to the limiter and
// the pacer.
func (p *Policy) record(ctx context.Context, epoch uint64, seq int64, resp backend.Response,
	err error) {
	now := p.clock.Now()
	if err == nil {
		p.pacer.finish(now, resp.Limits, seq)
		p.limiter.release(epoch, outcomeSuccess)
		return
	}

	be := backend.AsError(err)
	p.pacer.finish(now, be.Limits, seq)
	if be.Type == backend.TypeRateLimit && be.RetryAfter > 0 {
		p.pacer.holdFor(now, be.RetryAfter)
	}

	o := outcomeNeutral
	if be.Type == backend.TypeRateLimit || be.Type == backend.TypeOverloaded {
		o = outcomeOverload
		p.overloads.Add(1)
	}
	if limit := p.limiter.release(epoch, o); limit > 0 {
		p.logger.WarnContext(ctx, "lowered backend concurrency limit",
			slog.Int("limit", limit),
			slog.String("err", err.Error()))
	}
}

// waitBeforeRetry sleeps for the backoff before attempt.
func (p *Policy) waitBeforeRetry(
	ctx context.Context, req backend.Request, attempt int, lastErr error,
) error {
	wait := p.backoff(attempt-1, backend.AsError(lastErr).RetryAfter)
	p.logger.DebugContext(ctx, "retrying backend request",
		slog.String("batch_id", req.BatchID),
		slog.String("custom_id", req.CustomID),
		slog.Int("attempt", attempt),
		slog.Int64("wait_ms", wait.Milliseconds()),
		slog.String("err", lastErr.Error()))

	if err := p.cfg.Sleeper.Sleep(ctx, wait); err != nil {
		return stopError("wait before retry", err, lastErr)
	}
	return nil
}

// backoff returns the wait after failed attempt n (1 for the first): a
// random duration in [d/2, d] with d = BaseDelay·2^(n-1) capped at MaxDelay,
// raised to retryAfter (itself capped at MaxRetryAfter) if that is longer.
func (p *Policy) backoff(n int, retryAfter time.Duration) time.Duration {
	d := p.cfg.BaseDelay
	for i := 1; i < n && d < p.cfg.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.cfg.MaxDelay)

	half := d / 2
	wait := half + time.Duration(p.jitter()*float64(d-half))

	return max(wait, min(retryAfter, p.cfg.MaxRetryAfter))
}

// stopError wraps the cause of a context that ended while waiting, and the
// last attempt's error if there was one, so that callers can test for either.
func stopError(step string, cause, lastErr error) error {
	if lastErr == nil {
		return fmt.Errorf("%s: %w", step, cause)
	}
	return fmt.Errorf("%s: %w (last error: %w)", step, cause, lastErr)
}
