package policy

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/clock"
)

// Sleeper waits for a duration unless a context ends first.
type Sleeper interface {
	// Sleep returns nil after d has passed, or context.Cause(ctx) as soon as
	// ctx ends, whichever comes first. A d of zero or less does not wait.
	Sleep(ctx context.Context, d time.Duration) error
}

// RealSleeper waits on a timer of the runtime.
type RealSleeper struct{}

// Sleep waits for d on a timer, or until ctx ends.
func (RealSleeper) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return contextError(ctx)
	}

	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// FakeSleeper moves a fake clock forward instead of waiting, so that a test
// observes the time pass at once. It records every requested wait. It is
// safe for concurrent use, but concurrent sleepers each advance the shared
// clock, so their waits add up rather than overlap.
type FakeSleeper struct {
	clock *clock.Fake

	mu    sync.Mutex
	waits []time.Duration
}

// NewFakeSleeper returns a FakeSleeper that advances clk.
func NewFakeSleeper(clk *clock.Fake) *FakeSleeper {
	return &FakeSleeper{clock: clk}
}

// Sleep records d and advances the clock by it. It returns the context's
// cause, without advancing, when ctx has already ended.
func (s *FakeSleeper) Sleep(ctx context.Context, d time.Duration) error {
	if err := contextError(ctx); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}

	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()

	s.clock.Advance(d)
	return nil
}

// Waits returns the durations that Sleep was called with, in order, leaving
// out calls that did not wait.
func (s *FakeSleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

// contextError returns context.Cause(ctx) when ctx has ended, and nil
// otherwise.
func contextError(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}
