package policy

import (
	"container/list"
	"context"
	"math"
	"sync"
)

// outcome is the class of an attempt's result that the limiter acts on.
type outcome int

const (
	// outcomeNeutral leaves the limit alone, because the attempt was not
	// sent or failed for a reason other than overload.
	outcomeNeutral outcome = iota
	// outcomeSuccess grows the limit.
	outcomeSuccess
	// outcomeOverload (a 429 or 529) shrinks the limit.
	outcomeOverload
)

// decreaseFactor is the multiplier applied to the limit on overload.
const decreaseFactor = 0.5

// limiter is a semaphore whose size follows AIMD: additive increase on
// success, multiplicative decrease on overload. Waiters are served in FIFO
// order.
type limiter struct {
	min, max float64

	mu       sync.Mutex
	limit    float64
	inFlight int
	// epoch counts decreases. A slot carries the epoch in which it was
	// granted, and only an overload reported on a slot of the current epoch
	// lowers the limit, so that the responses to one round of requests
	// cause one decrease.
	epoch   uint64
	waiters list.List // of *slotWaiter
}

type slotWaiter struct {
	ready chan struct{}
	epoch uint64 // set when the slot is granted, before ready is closed
}

func newLimiter(minSlots, maxSlots int) *limiter {
	return &limiter{min: float64(minSlots), max: float64(maxSlots), limit: float64(maxSlots)}
}

// acquire waits for a free slot and returns the epoch it was granted in. It
// returns the context's cause if ctx ends first.
func (l *limiter) acquire(ctx context.Context) (uint64, error) {
	if err := contextError(ctx); err != nil {
		return 0, err
	}

	l.mu.Lock()
	if l.waiters.Len() == 0 && l.inFlight < l.slotsLocked() {
		l.inFlight++
		epoch := l.epoch
		l.mu.Unlock()
		return epoch, nil
	}

	w := &slotWaiter{ready: make(chan struct{})}
	elem := l.waiters.PushBack(w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return w.epoch, nil
	case <-ctx.Done():
	}

	// The slot may have been granted between ctx ending and the lock: then
	// it must be handed on rather than leaked.
	l.mu.Lock()
	select {
	case <-w.ready:
		l.releaseLocked(w.epoch, outcomeNeutral)
	default:
		l.waiters.Remove(elem)
	}
	l.mu.Unlock()
	return 0, context.Cause(ctx)
}

// release frees a slot granted in epoch and adjusts the limit for the
// attempt's outcome. It reports the new limit when a decrease happened, or 0.
func (l *limiter) release(epoch uint64, o outcome) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.releaseLocked(epoch, o)
}

func (l *limiter) releaseLocked(epoch uint64, o outcome) int {
	l.inFlight--

	decreased := 0
	switch o {
	case outcomeSuccess:
		l.limit = min(l.max, l.limit+1/l.limit)
	case outcomeOverload:
		if epoch == l.epoch {
			l.limit = max(l.min, l.limit*decreaseFactor)
			l.epoch++
			decreased = l.slotsLocked()
		}
	}

	// Hand free slots to waiters in arrival order.
	for l.waiters.Len() > 0 && l.inFlight < l.slotsLocked() {
		w := l.waiters.Remove(l.waiters.Front()).(*slotWaiter)
		l.inFlight++
		w.epoch = l.epoch
		close(w.ready)
	}
	return decreased
}

// slotsLocked returns the limit as a whole number of slots.
func (l *limiter) slotsLocked() int {
	return max(1, int(math.Floor(l.limit)))
}

// limiterStats is a snapshot of the limiter for [Stats].
type limiterStats struct {
	limit, inFlight, waiting int
}

func (l *limiter) stats() limiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return limiterStats{limit: l.slotsLocked(), inFlight: l.inFlight, waiting: l.waiters.Len()}
}
